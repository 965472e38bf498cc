package fedtest

import (
	"context"
	"encoding/json"
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

// The same death as a real SIGKILL, on PostgreSQL: another session holds
// fed_queue_edus (the queues of EDUs per destination) locked — reading it
// (scans of the queues) goes on; writing it waits — so the process stops
// at its write of the to-device EDU into bob's server's queue — after the
// transaction ID's commit in a server that queued the EDU separately,
// inside that commit here — and is killed there. Nothing else writes EDUs
// meanwhile (alice and bob share no room). The client's retry on the restarted
// server must reach bob, once.
func TestToDeviceToOtherServerSurvivesSIGKILL(t *testing.T) {
	k := startKillable(t, true)
	b := k.b
	a := k.start()
	alice, bob := a.Register(t, "alice"), b.Register(t, "bob")
	path := hstest.Path("/sendToDevice/%s/%s", "org.conclave.key", "t1")
	body := `{"messages":{"` + bob.UserID + `":{"` + bob.DeviceID + `":{"n":1}}}}`

	k.killWhileQueueing(t, a, "fed_queue_edus", path, alice.Token, body)

	a = k.start()
	a.MustOK(t, "PUT", path, alice.Token, body)
	got := toDeviceMessages(t, b, bob, "org.conclave.key", 1)
	if len(got) != 1 || got[0]["n"] != 1.0 {
		t.Fatalf("bob got %v", got)
	}
}

// failsToDevice is a store whose next SendToDevice, when armed, fails
// without writing anything (the database is unreachable for a moment).
type failsToDevice struct {
	homeserver.Store
	armed *atomic.Bool
}

func (s failsToDevice) SendToDevice(ctx context.Context, sender, senderDevice, txnID string, msgs []store.ToDeviceSend, fed []store.FedEnqueue) ([]string, bool, error) {
	if s.armed.CompareAndSwap(true, false) {
		return nil, false, errors.New("fedtest: the database is away")
	}
	return s.Store.SendToDevice(ctx, sender, senderDevice, txnID, msgs, fed)
}

// A receiving server that fails to store a to-device message of a
// transaction fails the transaction (it must not answer 200 for what it
// lost): the sender sends it again — here at once, as the receiver then
// talks to it — and the message arrives, once. A message_id the store
// cannot hold (a NUL) is refused as malformed instead: the transaction
// succeeds, or it would fail at every retry and stop the sender's queue.
func TestToDeviceFromOtherServerKeptWhenStoreFails(t *testing.T) {
	var armed atomic.Bool
	hs := hstest.StartFederationWith(t, 2, nil, func(i int) homeserver.Options {
		if i != 1 {
			return homeserver.Options{}
		}
		return homeserver.Options{WrapStore: func(st homeserver.Store) homeserver.Store { return failsToDevice{st, &armed} }}
	})
	a, b := hs[0], hs[1]
	alice, bob := a.Register(t, "alice"), b.Register(t, "bob")
	armed.Store(true)
	a.MustOK(t, "PUT", hstest.Path("/sendToDevice/%s/%s", "org.conclave.key", "t1"), alice.Token,
		map[string]any{"messages": map[string]any{bob.UserID: map[string]any{bob.DeviceID: map[string]any{"n": 1}}}})
	waitUntil(t, "b's failed write", func() bool { return !armed.Load() })
	// b talks to a: a's back-off for b ends, the transaction goes again.
	b.MustOK(t, "PUT", hstest.Path("/sendToDevice/%s/%s", "org.conclave.pong", "p1"), bob.Token,
		map[string]any{"messages": map[string]any{alice.UserID: map[string]any{alice.DeviceID: map[string]any{"n": 1}}}})
	got := toDeviceMessages(t, b, bob, "org.conclave.key", 1)
	if len(got) != 1 || got[0]["n"] != 1.0 {
		t.Fatalf("bob got %v", got)
	}

	// Straight from b's federation client: a NUL in the message_id.
	edu := map[string]any{"edu_type": "m.direct_to_device", "content": map[string]any{"sender": bob.UserID, "type": "org.conclave.nul", "message_id": "m\x00",
		"messages": map[string]any{alice.UserID: map[string]any{alice.DeviceID: map[string]any{"n": 1}, "D\x00": map[string]any{"n": 2}}}}}
	body, _ := json.Marshal(map[string]any{"origin": b.ServerName, "origin_server_ts": 1, "pdus": []any{}, "edus": []any{edu}})
	if _, err := b.HS.FedClient.SendTransaction(context.Background(), a.ServerName, "nul", body); err != nil {
		t.Fatalf("a transaction with a NUL in a message_id: %v", err)
	}
}
