package room_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"conclave/internal/event"
	"conclave/internal/room"
	"conclave/internal/store"
	"conclave/internal/store/postgres"
	"conclave/internal/store/sqlite"
	"conclave/internal/store/storetest/pgtest"
)

// twoWriters returns two room services on one database, as two processes
// sharing it would be, without anything telling one about the other's
// writes: each finds out through store.ErrRoomChanged.
// With CONCLAVE_TEST_DATABASE=postgres the database is PostgreSQL, whose
// writes also take the cross-process room lock.
func twoWriters(t *testing.T) (a, b *room.Service, db store.Store) {
	t.Helper()
	var err error
	if os.Getenv("CONCLAVE_TEST_DATABASE") == "postgres" {
		db, err = postgres.Open(context.Background(), pgtest.NewDatabase(t))
	} else {
		db, err = sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "retry.db"))
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	key, err := event.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	return room.New(db, "x.example", key), room.New(db, "x.example", key), db
}

func msg(roomID, sender, txn, body string) *room.SendRequest {
	c, _ := json.Marshal(map[string]string{"msgtype": "m.text", "body": body})
	return &room.SendRequest{RoomID: roomID, Sender: sender, DeviceID: "DEV", TxnID: txn, Type: "m.room.message", Content: c}
}

// checkLinear asserts that the room's events form one line: each event's
// prev_events is exactly the event before it.
func checkLinear(t *testing.T, db store.Store, roomID string, want int) {
	t.Helper()
	evs, err := db.RoomEvents(context.Background(), store.RoomEventsQuery{RoomID: roomID, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != want {
		t.Fatalf("room has %d events, want %d", len(evs), want)
	}
	for i := 1; i < len(evs); i++ {
		var pdu struct {
			PrevEvents []string `json:"prev_events"`
		}
		json.Unmarshal(evs[i].JSON, &pdu)
		if len(pdu.PrevEvents) != 1 || pdu.PrevEvents[0] != evs[i-1].EventID {
			t.Fatalf("event %d (%s) has prev_events %v, want [%s]", i, evs[i].EventID, pdu.PrevEvents, evs[i-1].EventID)
		}
	}
}

// TestWriteRetriesOnConcurrentChange: a write built on state another writer
// has moved past is rebuilt on the room's new head, on every write path,
// instead of failing.
func TestWriteRetriesOnConcurrentChange(t *testing.T) {
	ctx := context.Background()
	a, b, db := twoWriters(t)
	alice, bob := "@alice:x.example", "@bob:x.example"
	roomID, err := a.CreateRoom(ctx, &room.CreateRequest{Creator: alice, Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	count := func() int {
		evs, err := db.RoomEvents(ctx, store.RoomEventsQuery{RoomID: roomID, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		return len(evs)
	}
	n = count()
	// b loads the room, then a moves on: b's state is stale every time.
	step := 0
	writeBoth := func(viaB func() error) {
		t.Helper()
		step++
		if _, err := b.PowerLevels(ctx, roomID); err != nil { // loads (or keeps) b's state
			t.Fatal(err)
		}
		if _, err := a.Send(ctx, msg(roomID, alice, fmt.Sprint("a", step), "from a")); err != nil {
			t.Fatal(err)
		}
		if err := viaB(); err != nil {
			t.Fatalf("step %d: write through the stale writer: %v", step, err)
		}
		n += 2
	}
	writeBoth(func() error {
		_, err := b.SetMembership(ctx, &room.MembershipRequest{RoomID: roomID, Sender: bob, Target: bob, Membership: "join"})
		return err
	})
	writeBoth(func() error { _, err := b.Send(ctx, msg(roomID, bob, "t1", "from b")); return err })
	// The same transaction again after another concurrent change: deduped,
	// nothing new is written.
	var first string
	writeBoth(func() error {
		var err error
		first, err = b.Send(ctx, msg(roomID, bob, "t2", "once"))
		return err
	})
	if _, err := a.Send(ctx, msg(roomID, alice, "a-extra", "x")); err != nil {
		t.Fatal(err)
	}
	n++
	again, err := b.Send(ctx, msg(roomID, bob, "t2", "once"))
	if err != nil || again != first {
		t.Fatalf("repeated txn: %q, %v; want %q", again, err, first)
	}
	name := "m.room.name"
	empty := ""
	writeBoth(func() error {
		_, err := b.Send(ctx, &room.SendRequest{RoomID: roomID, Sender: alice, Type: name, StateKey: &empty, Content: json.RawMessage(`{"name":"n"}`)})
		return err
	})
	writeBoth(func() error {
		_, err := b.Send(ctx, &room.SendRequest{RoomID: roomID, Sender: bob, DeviceID: "DEV", TxnID: "r1", Type: "m.room.redaction", Redacts: first, Content: json.RawMessage(`{}`)})
		return err
	})
	// Profile refresh goes through the same retry.
	if _, err := b.PowerLevels(ctx, roomID); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Send(ctx, msg(roomID, alice, "a-p", "x")); err != nil {
		t.Fatal(err)
	}
	n++
	if err := db.SetDisplayName(ctx, bob, "Bob"); err != nil {
		t.Fatal(err)
	}
	if err := b.UpdateProfile(ctx, bob); err != nil {
		t.Fatal(err)
	}
	n++
	// Upgrade through the stale writer: the old room's closing events are
	// rebuilt on its new head.
	if _, err := b.PowerLevels(ctx, roomID); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Send(ctx, msg(roomID, alice, "a-u", "x")); err != nil {
		t.Fatal(err)
	}
	n++
	newID, err := b.UpgradeRoom(ctx, roomID, alice, "DEV", event.DefaultRoomVersion, nil)
	if err != nil {
		t.Fatalf("upgrade through the stale writer: %v", err)
	}
	if newID == "" {
		t.Fatal("no replacement room")
	}
	n += 2 // tombstone and restricted power levels
	checkLinear(t, db, roomID, n)
}
