package fedtest

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"conclave/internal/homeserver"
	"conclave/internal/homeserver/hstest"
	"conclave/internal/store"
)

// failsDeviceListEnqueue is a store whose next queueing of an
// m.device_list_update, when armed, fails (nothing is queued).
type failsDeviceListEnqueue struct {
	homeserver.Store
	armed *atomic.Bool
}

func (s failsDeviceListEnqueue) FedEnqueue(ctx context.Context, items []store.FedEnqueue) error {
	for _, it := range items {
		if it.Item.EDUType == "m.device_list_update" && s.armed.CompareAndSwap(true, false) {
			return errors.New("fedtest: the database is away")
		}
	}
	return s.Store.FedEnqueue(ctx, items)
}

// A device change whose announcement failed (the queueing failed after the
// change committed) is announced again by RetryFailedAnnouncements (every
// minute), not only at the user's next change or the next start.
func TestFailedDeviceAnnouncementRetried(t *testing.T) {
	var armed atomic.Bool
	hs := hstest.StartFederationWith(t, 2, nil, func(i int) homeserver.Options {
		if i != 0 {
			return homeserver.Options{}
		}
		return homeserver.Options{WrapStore: func(st homeserver.Store) homeserver.Store { return failsDeviceListEnqueue{st, &armed} }}
	})
	a, b := hs[0], hs[1]
	alice, bob := a.Register(t, "alice"), b.Register(t, "bob")
	ed := uploadNewKeys(t, a, alice)
	roomID := createPublicRoom(t, a, alice)
	joinVia(t, b, bob, roomID, a.ServerName)
	waitJoined(t, a, alice, roomID, bob.UserID)
	mustQueryKeys(t, b, bob, alice, ed)
	ctx := context.Background()
	// A query of a list not cached starts caching it (in the background:
	// asked again until it is, in case a resync gave up under load).
	waitUntil(t, "alice's list cached on b", func() bool {
		_, _, _, ok, _ := b.HS.Store.RemoteDeviceList(ctx, alice.UserID)
		if !ok {
			mustQueryKeys(t, b, bob, alice, ed)
		}
		return ok
	})
	nameOnB := func() string {
		devs, _, _, _, _ := b.HS.Store.RemoteDeviceList(ctx, alice.UserID)
		if len(devs) != 1 || devs[0].DisplayName == nil {
			return ""
		}
		return *devs[0].DisplayName
	}
	armed.Store(true)
	a.MustOK(t, "PUT", hstest.Path("/devices/%s", alice.DeviceID), alice.Token, map[string]any{"display_name": "Renamed"})
	if armed.Load() {
		t.Fatal("the rename's announcement was not queued")
	}
	if err := a.HS.Keys.RetryFailedAnnouncements(ctx); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the rename announced by the retry", func() bool { return nameOnB() == "Renamed" })
}

// failsRemoteDeviceUpdate is a store whose next update of a cached remote
// device list, when armed, fails (nothing is written).
type failsRemoteDeviceUpdate struct {
	homeserver.Store
	armed *atomic.Bool
}

func (s failsRemoteDeviceUpdate) UpdateRemoteDevice(ctx context.Context, userID string, streamID int64, d store.DeviceListEntry, deleted bool) (bool, error) {
	if s.armed.CompareAndSwap(true, false) {
		return false, errors.New("fedtest: the database is away")
	}
	return s.Store.UpdateRemoteDevice(ctx, userID, streamID, d, deleted)
}

// A receiving server that cannot store a device list update drops its
// cached copy of the list (which missed the update, and nothing else would
// tell until the user's next update) and marks the user changed: its
// clients query, and get the list from the user's server.
func TestMissedDeviceListUpdateDropsCache(t *testing.T) {
	var armed atomic.Bool
	hs := hstest.StartFederationWith(t, 2, nil, func(i int) homeserver.Options {
		if i != 1 {
			return homeserver.Options{}
		}
		return homeserver.Options{WrapStore: func(st homeserver.Store) homeserver.Store { return failsRemoteDeviceUpdate{st, &armed} }}
	})
	a, b := hs[0], hs[1]
	alice, bob := a.Register(t, "alice"), b.Register(t, "bob")
	ed := uploadNewKeys(t, a, alice)
	roomID := createPublicRoom(t, a, alice)
	joinVia(t, b, bob, roomID, a.ServerName)
	waitJoined(t, a, alice, roomID, bob.UserID)
	mustQueryKeys(t, b, bob, alice, ed)
	ctx := context.Background()
	cached := func() bool {
		_, _, _, ok, _ := b.HS.Store.RemoteDeviceList(ctx, alice.UserID)
		return ok
	}
	waitUntil(t, "alice's list cached on b", func() bool {
		if !cached() {
			mustQueryKeys(t, b, bob, alice, ed) // in case a resync gave up under load
			return false
		}
		return true
	})
	since := b.MustOK(t, "GET", "/_matrix/client/v3/sync?timeout=0", bob.Token, nil).Str("next_batch")
	armed.Store(true)
	a.MustOK(t, "PUT", hstest.Path("/devices/%s", alice.DeviceID), alice.Token, map[string]any{"display_name": "Renamed"})
	waitUntil(t, "the cache that missed the update dropped", func() bool { return !armed.Load() && !cached() })
	// The drop and the change are recorded one after the other: the sync
	// long-polls for the change (an incremental sync from before it).
	var last []byte
	told := func() bool {
		r := b.MustOK(t, "GET", "/_matrix/client/v3/sync?timeout=1000&since="+since, bob.Token, nil)
		last = r.Body
		var res struct {
			DeviceLists struct {
				Changed []string `json:"changed"`
			} `json:"device_lists"`
		}
		json.Unmarshal(r.Body, &res)
		return slices.Contains(res.DeviceLists.Changed, alice.UserID)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !told() {
		if time.Now().After(deadline) {
			t.Fatalf("bob was not told alice changed: %s", last)
		}
	}
	q := b.MustOK(t, "POST", "/_matrix/client/v3/keys/query", bob.Token, map[string]any{"device_keys": map[string]any{alice.UserID: []string{}}})
	if !strings.Contains(string(q.Body), "Renamed") {
		t.Fatalf("bob's query shows the old list: %s", q.Body)
	}
}
