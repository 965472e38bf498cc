package fedtest

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"

	"conclave/internal/homeserver"
	"conclave/internal/homeserver/hstest"
	"conclave/internal/store"
)

// diesAfterToDevice is a store whose next SendToDevice, when armed, commits
// and then fails: what the service sees when the process dies (or the
// database connection drops) right after the commit. Whatever the service
// would do next for that request never happens.
type diesAfterToDevice struct {
	homeserver.Store
	armed *atomic.Bool
}

func (s diesAfterToDevice) SendToDevice(ctx context.Context, sender, senderDevice, txnID string, msgs []store.ToDeviceSend, fed []store.FedEnqueue) ([]string, bool, error) {
	r, dup, err := s.Store.SendToDevice(ctx, sender, senderDevice, txnID, msgs, fed)
	if err == nil && s.armed.CompareAndSwap(true, false) {
		return nil, false, errors.New("fedtest: died after the commit")
	}
	return r, dup, err
}

// A to-device message for another server's user (an Olm key share) is not
// lost when the sending server dies right after committing the request's
// transaction ID: the client's retry is a duplicate and sends nothing, so
// the m.direct_to_device EDU must have been queued in that same commit.
// Once the client retries on the same server (the duplicate wakes the
// sender), once after a restart, where a second message follows: the
// destination's queue is sent in order, so the first must have arrived
// when the second does. Each exactly once (toDeviceMessages fails on a
// duplicate).
func TestToDeviceToOtherServerSurvivesDeathAfterCommit(t *testing.T) {
	var armed atomic.Bool
	hs := hstest.StartFederationWith(t, 2, nil, func(i int) homeserver.Options {
		if i != 0 {
			return homeserver.Options{}
		}
		return homeserver.Options{WrapStore: func(st homeserver.Store) homeserver.Store { return diesAfterToDevice{st, &armed} }}
	})
	a, b := hs[0], hs[1]
	alice, bob := a.Register(t, "alice"), b.Register(t, "bob")
	send := func(txn string, n int) *hstest.Response {
		t.Helper()
		return a.Do(t, "PUT", hstest.Path("/sendToDevice/%s/%s", "org.conclave.key", txn), alice.Token,
			map[string]any{"messages": map[string]any{bob.UserID: map[string]any{bob.DeviceID: map[string]any{"n": n}}}})
	}
	check := func(what string, want ...float64) {
		t.Helper()
		got := toDeviceMessages(t, b, bob, "org.conclave.key", len(want))
		if len(got) != len(want) {
			t.Fatalf("%s: bob got %v, want n = %v", what, got, want)
		}
		for i := range want {
			if got[i]["n"] != want[i] {
				t.Fatalf("%s: bob got %v, want n = %v", what, got, want)
			}
		}
	}

	armed.Store(true)
	if r := send("t1", 1); r.Status == http.StatusOK {
		t.Fatalf("the failed write was acknowledged: %s", r.Body)
	}
	if r := send("t1", 1); r.Status != http.StatusOK { // the retry: a duplicate
		t.Fatalf("retry: %d %s", r.Status, r.Body)
	}
	// The duplicate wakes the sender (the queue is scanned only every 30 s).
	check("retried on the same server", 1)
	if r := send("t2", 2); r.Status != http.StatusOK {
		t.Fatalf("t2: %d %s", r.Status, r.Body)
	}
	check("the next message", 2)

	armed.Store(true)
	if r := send("t3", 3); r.Status == http.StatusOK {
		t.Fatalf("the failed write was acknowledged: %s", r.Body)
	}
	a = a.Restart(t)
	a.MustOK(t, "PUT", hstest.Path("/sendToDevice/%s/%s", "org.conclave.key", "t3"), alice.Token,
		map[string]any{"messages": map[string]any{bob.UserID: map[string]any{bob.DeviceID: map[string]any{"n": 3}}}})
	a.MustOK(t, "PUT", hstest.Path("/sendToDevice/%s/%s", "org.conclave.key", "t4"), alice.Token,
		map[string]any{"messages": map[string]any{bob.UserID: map[string]any{bob.DeviceID: map[string]any{"n": 4}}}})
	check("retried after a restart", 3, 4)
}
