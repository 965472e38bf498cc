package fedtest

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"conclave/internal/homeserver"
	"conclave/internal/homeserver/hstest"
	"conclave/internal/store"
)

// A transaction is processed to its end when its sender hangs up half-way
// (its timeout fired, it stopped). Here Bob's server sends Alice's server
// an update of Bob's cached device list and hangs up while Alice's server
// writes it: the update must still be applied. Cancelled with the request,
// the write failed and the update was taken for a missed one — the
// cache dropped, Bob marked changed for nothing (the CI flake of
// TestDeviceListsUpdateOverFederation, whose second server stops while its
// announcement is in flight) — and a PDU would have been answered "context
// canceled", the answer the sender's retry then gets.
func TestTransactionOutlivesItsSender(t *testing.T) {
	spy := &hangupSpy{entered: make(chan struct{})}
	hs := hstest.StartFederationWith(t, 2, nil, func(i int) homeserver.Options {
		if i != 0 {
			return homeserver.Options{}
		}
		return homeserver.Options{WrapStore: func(st homeserver.Store) homeserver.Store { spy.Store = st; return spy }}
	})
	a, b := hs[0], hs[1]
	alice, bob := a.Register(t, "alice"), b.Register(t, "bob")
	roomID := createPublicRoom(t, a, alice)
	joinVia(t, b, bob, roomID, a.ServerName)
	waitJoined(t, a, alice, roomID, bob.UserID)

	ctx := context.Background()
	if err := a.HS.Keys.Resync(ctx, bob.UserID); err != nil {
		t.Fatal(err)
	}
	_, _, cur, cached, err := a.HS.Store.RemoteDeviceList(ctx, bob.UserID)
	if err != nil || !cached {
		t.Fatalf("bob's list on alice's server: cached %v, %v", cached, err)
	}

	keys, _ := json.Marshal(map[string]any{"user_id": bob.UserID, "device_id": "PHONE",
		"algorithms": []string{"m.olm.v1.curve25519-aes-sha2"},
		"keys":       map[string]string{"ed25519:PHONE": "bm90IGEgcmVhbCBrZXkgYnV0IGZpbmUgaGVyZQ", "curve25519:PHONE": "YW5kIG5laXRoZXIgaXMgdGhpcyBvbmUgcmVhbGx5"}})
	txn := map[string]any{"origin": b.ServerName, "origin_server_ts": time.Now().UnixMilli(), "pdus": []any{},
		"edus": []any{map[string]any{"edu_type": "m.device_list_update", "content": map[string]any{
			"user_id": bob.UserID, "device_id": "PHONE", "stream_id": cur + 1, "prev_id": []int64{cur}, "keys": json.RawMessage(keys)}}}}
	spy.arm("PHONE")
	sendCtx, hangUp := context.WithCancel(ctx)
	sent := make(chan error, 1)
	go func() {
		sent <- b.HS.FedClient.Do(sendCtx, "PUT", a.ServerName, "/_matrix/federation/v1/send/hangup-1", nil, txn, nil)
	}()
	select {
	case <-spy.entered:
	case <-time.After(20 * time.Second):
		t.Fatal("the update never reached the store")
	}
	hangUp()
	if err := <-sent; !errors.Is(err, context.Canceled) {
		t.Fatalf("the sender's request: %v, want it cancelled", err)
	}

	waitUntil(t, "bob's PHONE in alice's view of bob's devices", func() bool {
		r := a.MustOK(t, "POST", "/_matrix/client/v3/keys/query", alice.Token, map[string]any{"device_keys": map[string]any{bob.UserID: []string{}}})
		var res struct {
			DeviceKeys map[string]map[string]json.RawMessage `json:"device_keys"`
		}
		return json.Unmarshal(r.Body, &res) == nil && res.DeviceKeys[bob.UserID]["PHONE"] != nil
	})
	if _, _, now, _, _ := a.HS.Store.RemoteDeviceList(ctx, bob.UserID); now != cur+1 {
		t.Fatalf("bob's cached list is at stream_id %d, want %d (the update applied)", now, cur+1)
	}
}

// hangupSpy holds the write of an armed device's update of a cached list
// until the request it serves is cancelled — which never happens when the
// transaction outlives its sender; then it goes on after a bound.
type hangupSpy struct {
	homeserver.Store
	mu       sync.Mutex
	deviceID string
	entered  chan struct{}
}

func (s *hangupSpy) arm(deviceID string) {
	s.mu.Lock()
	s.deviceID = deviceID
	s.mu.Unlock()
}

func (s *hangupSpy) UpdateRemoteDevice(ctx context.Context, userID string, streamID int64, dev store.DeviceListEntry, deleted bool) (bool, error) {
	s.mu.Lock()
	hold := s.deviceID != "" && s.deviceID == dev.DeviceID
	if hold {
		s.deviceID = ""
	}
	s.mu.Unlock()
	if hold {
		close(s.entered)
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
	return s.Store.UpdateRemoteDevice(ctx, userID, streamID, dev, deleted)
}
