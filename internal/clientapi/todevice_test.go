package clientapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"conclave/internal/homeserver"
	"conclave/internal/homeserver/hstest"
	"conclave/internal/store"
)

func TestSendToDevice(t *testing.T) {
	s := hstest.Start(t)
	ctx := context.Background()
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	// A second device for bob.
	if err := s.HS.Store.CreateDevice(ctx, &store.Device{UserID: bob.UserID, DeviceID: "BOB2"}, store.NewToken{AccessHash: []byte("bob2-token-hash-0000000000000000")}); err != nil {
		t.Fatal(err)
	}
	var notified []string
	s.HS.Keys.NotifyToDevice = func(u ...string) { notified = append(notified, u...) }

	send := func(txn string, msgs any) *hstest.Response {
		return s.Do(t, "PUT", hstest.Path("/sendToDevice/%s/%s", "m.room_key_request", txn), alice.Token, map[string]any{"messages": msgs})
	}
	expect(t, send("t1", map[string]any{bob.UserID: map[string]any{bob.DeviceID: map[string]any{"n": 1}}}), 200, "")
	if len(notified) != 1 || notified[0] != bob.UserID {
		t.Fatalf("notify: %v", notified)
	}
	// The same transaction again: accepted, nothing new stored.
	expect(t, send("t1", map[string]any{bob.UserID: map[string]any{bob.DeviceID: map[string]any{"n": 1}}}), 200, "")
	expect(t, send("t2", map[string]any{bob.UserID: map[string]any{"*": map[string]any{"n": 2}}, "@nobody:localhost": map[string]any{"*": map[string]any{}}, "@x:remote.example": map[string]any{"D": map[string]any{}}}), 200, "")
	expect(t, send("t3", map[string]any{bob.UserID: map[string]any{"NOSUCHDEVICE": map[string]any{"n": 3}}}), 200, "")

	max, err := s.HS.Store.MaxStreamPos(ctx)
	if err != nil {
		t.Fatal(err)
	}
	get := func(device string, since int64) ([]map[string]any, int64) {
		msgs, next, _, _, err := s.HS.Keys.SyncExtras(ctx, bob.UserID, device, since, max)
		if err != nil {
			t.Fatal(err)
		}
		var out []map[string]any
		for _, m := range msgs {
			var v map[string]any
			json.Unmarshal(m, &v)
			out = append(out, v)
		}
		return out, next
	}
	msgs, next := get(bob.DeviceID, 0)
	if len(msgs) != 2 || next != max || dig(msgs[0], "content", "n") != 1.0 || dig(msgs[1], "content", "n") != 2.0 ||
		msgs[0]["sender"] != alice.UserID || msgs[0]["type"] != "m.room_key_request" {
		t.Fatalf("bob's messages: %v", msgs)
	}
	// Not acknowledged yet: delivered again.
	if again, _ := get(bob.DeviceID, 0); len(again) != 2 {
		t.Fatalf("redelivery: %v", again)
	}
	if m2, _ := get("BOB2", 0); len(m2) != 1 || dig(m2[0], "content", "n") != 2.0 {
		t.Fatalf("BOB2: %v", m2)
	}
	// Syncing from max acknowledges (deletes) them.
	if m, _ := get(bob.DeviceID, max); len(m) != 0 {
		t.Fatalf("after ack: %v", m)
	}
	if m, _ := get(bob.DeviceID, 0); len(m) != 0 {
		t.Fatalf("acknowledged messages came back: %v", m)
	}
	// A deleted device's messages go with it.
	if err := s.HS.Store.DeleteDevices(ctx, bob.UserID, []string{"BOB2"}); err != nil {
		t.Fatal(err)
	}
	if m, _ := get("BOB2", 0); len(m) != 0 {
		t.Fatalf("deleted device still has messages: %v", m)
	}

	// More than a batch: delivered in order, the token stops at the batch.
	for i := 0; i < 150; i++ {
		expect(t, send("b"+strconv.Itoa(i), map[string]any{bob.UserID: map[string]any{bob.DeviceID: map[string]any{"i": i}}}), 200, "")
	}
	max, _ = s.HS.Store.MaxStreamPos(ctx)
	msgs, next = get(bob.DeviceID, 0)
	if len(msgs) != 100 || next >= max {
		t.Fatalf("batch: %d messages, next %d max %d", len(msgs), next, max)
	}
	rest, next2 := get(bob.DeviceID, next)
	if len(rest) != 50 || next2 != max || dig(rest[0], "content", "i") != 100.0 || dig(rest[49], "content", "i") != 149.0 {
		t.Fatalf("second batch: %d next %d", len(rest), next2)
	}

	// Errors.
	expect(t, s.Do(t, "PUT", hstest.Path("/sendToDevice/%s/%s", "m.x", "e1"), alice.Token, map[string]any{}), 400, "M_MISSING_PARAM")
	expect(t, send("e2", map[string]any{bob.UserID: map[string]any{bob.DeviceID: "not an object"}}), 400, "M_BAD_JSON")
	expect(t, send("e3", map[string]any{"bob": map[string]any{"D": map[string]any{}}}), 400, "M_INVALID_PARAM")
	expect(t, send("e4", []string{}), 400, "M_BAD_JSON")
	expect(t, s.Do(t, "PUT", hstest.Path("/sendToDevice/%s/%s", "m.x", "e5"), "", map[string]any{"messages": map[string]any{}}), 401, "M_MISSING_TOKEN")
}

func TestKeyChanges(t *testing.T) {
	s := hstest.Start(t)
	alice := newDevice(t, s.CreateUser(t, "alice"))
	bob := newDevice(t, s.CreateUser(t, "bob"))
	ctx := context.Background()
	from, _ := s.HS.Store.MaxStreamPos(ctx)
	expect(t, upload(t, s, alice, map[string]any{"device_keys": alice.deviceKeys(t)}), 200, "")
	expect(t, upload(t, s, bob, map[string]any{"device_keys": bob.deviceKeys(t)}), 200, "")
	to, _ := s.HS.Store.MaxStreamPos(ctx)
	r := s.MustOK(t, "GET", hstest.Path("/keys/changes")+"?from="+strconv.FormatInt(from, 10)+"&to="+strconv.FormatInt(to, 10), alice.Token, nil)
	ch, _ := r.JSON["changed"].([]any)
	// Alice shares no room with bob: only herself.
	if len(ch) != 1 || ch[0] != alice.UserID {
		t.Fatalf("changes: %s", r.Body)
	}
	r = s.MustOK(t, "GET", hstest.Path("/keys/changes")+"?from=s"+strconv.FormatInt(to, 10), alice.Token, nil)
	if ch, _ := r.JSON["changed"].([]any); len(ch) != 0 {
		t.Fatalf("no changes expected: %s", r.Body)
	}
	expect(t, s.Do(t, "GET", hstest.Path("/keys/changes"), alice.Token, nil), 400, "M_MISSING_PARAM")
	expect(t, s.Do(t, "GET", hstest.Path("/keys/changes")+"?from=abc", alice.Token, nil), 400, "M_INVALID_PARAM")
}

// lostAfterCommit fails the first SendToDevice after its write committed,
// as a connection lost while the commit's answer was on its way would.
type lostAfterCommit struct {
	homeserver.Store
	failed atomic.Bool
}

func (s *lostAfterCommit) SendToDevice(ctx context.Context, sender, senderDevice, txnID string, msgs []store.ToDeviceSend, fed []store.FedEnqueue) ([]string, bool, error) {
	r, dup, err := s.Store.SendToDevice(ctx, sender, senderDevice, txnID, msgs, fed)
	if err == nil && s.failed.CompareAndSwap(false, true) {
		return nil, false, errors.New("connection lost after the commit")
	}
	return r, dup, err
}

// A send whose write committed but whose answer was lost fails, and the
// client sends the same transaction again: the retry is deduplicated, and
// still wakes the recipients, whom the failed attempt never woke (their
// long-polls would otherwise sleep on with the message waiting).
func TestSendToDeviceRetryWakesRecipients(t *testing.T) {
	var st *lostAfterCommit
	s := hstest.StartWith(t, homeserver.Options{WrapStore: func(inner homeserver.Store) homeserver.Store {
		st = &lostAfterCommit{Store: inner}
		return st
	}})
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	var mu sync.Mutex
	var woken []string
	s.HS.Keys.NotifyToDevice = func(u ...string) { mu.Lock(); woken = append(woken, u...); mu.Unlock() }
	send := func() *hstest.Response {
		return s.Do(t, "PUT", hstest.Path("/sendToDevice/%s/%s", "m.room_key", "k1"), alice.Token,
			map[string]any{"messages": map[string]any{bob.UserID: map[string]any{bob.DeviceID: map[string]any{"key": "k"}}}})
	}
	if r := send(); r.Status != 500 {
		t.Fatalf("first attempt: %d %s", r.Status, r.Body)
	}
	mu.Lock()
	if len(woken) != 0 {
		t.Fatalf("woken by a failed attempt: %v", woken)
	}
	mu.Unlock()
	expect(t, send(), 200, "")
	mu.Lock()
	defer mu.Unlock()
	if len(woken) != 1 || woken[0] != bob.UserID {
		t.Fatalf("woken by the retry: %v, want bob", woken)
	}
	// Stored once.
	msgs, _, _, _, err := s.HS.Keys.SyncExtras(context.Background(), bob.UserID, bob.DeviceID, 0, 1<<62)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 {
		t.Fatalf("bob has %d messages, want 1", len(msgs))
	}
}
