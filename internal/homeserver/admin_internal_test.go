package homeserver

import (
	"context"
	"testing"

	"conclave/internal/metrics"
	"conclave/internal/room"
	"conclave/internal/store"
)

// The metrics wrapper around the room service's store keeps the store's
// cross-process room lock visible.
func TestEventCounterKeepsRoomLocker(t *testing.T) {
	hs := &Homeserver{Metrics: metrics.New()}
	if _, ok := hs.countEvents(lockerStore{}).(store.RoomLocker); !ok {
		t.Fatal("wrapped store lost store.RoomLocker")
	}
	if _, ok := hs.countEvents(plainStore{}).(store.RoomLocker); ok {
		t.Fatal("wrapped store gained store.RoomLocker")
	}
}

type plainStore struct{ room.Store }

type lockerStore struct{ room.Store }

func (lockerStore) LockRoom(context.Context, string) (func(), error) { return func() {}, nil }
