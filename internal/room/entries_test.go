package room_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"conclave/internal/changes"
	"conclave/internal/room"
	"conclave/internal/store"
)

// With room for two rooms' state only, concurrent writers in eight rooms
// keep evicting and reloading each other's rooms: every send succeeds, each
// room's history stays linear (every event's prev_events is the event before
// it: an evicted writer lock never let two writers in), and unknown rooms
// leave no entry behind. Run it with -race (make test does).
func TestRoomCacheEvictsAndReloadsUnderConcurrentWriters(t *testing.T) {
	ctx := context.Background()
	svc, db := newService(t)
	svc.TrackChanges(changes.New(func() int64 { p, _ := db.MaxStreamPos(ctx); return p }))
	svc.SetMaxRoomStates(2, 1_000_000)
	alice := "@alice:bench.example"
	rooms := make([]string, 8)
	for i := range rooms {
		id, err := svc.CreateRoom(ctx, &room.CreateRequest{Creator: alice, Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		rooms[i] = id
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			for i := range 40 {
				r := rooms[rng.IntN(len(rooms))]
				if rng.IntN(5) == 0 {
					// Reads race the writers and the evictions too.
					if _, err := svc.JoinedMembers(ctx, r); err != nil {
						errs <- err
						return
					}
				}
				_, err := svc.Send(ctx, &room.SendRequest{RoomID: r, Sender: alice, DeviceID: "D", TxnID: fmt.Sprintf("w%d-%d", w, i),
					Type: "m.room.message", Content: json.RawMessage(`{"msgtype":"m.text","body":"x"}`)})
				if err != nil {
					errs <- err
					return
				}
				if _, err := svc.CurrentState(ctx, fmt.Sprintf("!unknown%d-%d:bench.example", w, i)); err == nil {
					errs <- fmt.Errorf("state of an unknown room")
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := 0
	for _, r := range rooms {
		evs, err := db.RoomEvents(ctx, store.RoomEventsQuery{RoomID: r, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		prev := ""
		for _, se := range evs {
			var p struct {
				PrevEvents []string `json:"prev_events"`
			}
			json.Unmarshal(se.JSON, &p)
			if prev != "" && (len(p.PrevEvents) != 1 || p.PrevEvents[0] != prev) {
				t.Fatalf("room %s: %s follows %v, not %s", r, se.EventID, p.PrevEvents, prev)
			}
			prev = se.EventID
			total++
		}
	}
	if total < 8*40 {
		t.Fatalf("%d events stored, want at least %d", total, 8*40)
	}
	if n, _ := svc.CachedRooms(); n > 2 {
		t.Fatalf("%d rooms kept, bound 2", n)
	}
	// A bound on state events: the rooms have 6 or 7 each, so 10 keeps one
	// room besides the most recently used.
	svc.SetMaxRoomStates(100, 10)
	for _, r := range rooms {
		if _, err := svc.JoinedMembers(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if n, events := svc.CachedRooms(); n > 2 || events > 10+7 {
		t.Fatalf("%d rooms with %d state events kept, bound 10 events", n, events)
	}
}
