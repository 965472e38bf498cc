package fedtest

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

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
	waitUntil(t, "alice's list cached on b", func() bool {
		_, _, _, ok, _ := b.HS.Store.RemoteDeviceList(ctx, alice.UserID)
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
