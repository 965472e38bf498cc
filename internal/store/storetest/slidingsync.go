package storetest

import (
	"errors"
	"testing"

	"conclave/internal/store"
)

func testSlidingSync(t *testing.T, s store.Store) {
	_, err := s.SlidingConn(ctx(), "@a:hs", "D", "room-list")
	wantErr(t, err, store.ErrNotFound)
	c := &store.SlidingConn{UserID: "@a:hs", DeviceID: "D", ConnID: "room-list", Seq: 1, State: []byte(`{"p":1}`), UpdatedTS: 100}
	id, err := s.NewSlidingConn(ctx(), c, 3, 0)
	must(t, err)
	got, err := s.SlidingConn(ctx(), "@a:hs", "D", "room-list")
	must(t, err)
	if got.ID != id || got.Seq != 1 || got.PrevSeq != 0 || string(got.State) != `{"p":1}` || len(got.PrevState) != 0 || got.UpdatedTS != 100 {
		t.Fatalf("conn %+v", got)
	}
	// Position 2 from 1 sends rooms !a and !b.
	must(t, s.AdvanceSlidingConn(ctx(), id, 1, store.SlidingConnUpdate{Seq: 2, PrevSeq: 1, State: []byte("s2"), PrevState: []byte("s1"), UpdatedTS: 110},
		[]store.SlidingRoom{{RoomID: "!a", Seq: 2, Sent: 10, Config: 7, Lazy: []byte(`{"@x":1}`)}, {RoomID: "!b", Seq: 2, Sent: 10, Config: 7}}))
	// Position 3 from 2 moves !a on.
	must(t, s.AdvanceSlidingConn(ctx(), id, 2, store.SlidingConnUpdate{Seq: 3, PrevSeq: 2, State: []byte("s3"), PrevState: []byte("s2"), UpdatedTS: 120},
		[]store.SlidingRoom{{RoomID: "!a", Seq: 3, Sent: 12, Config: 8, Lazy: []byte(`{"@x":1,"@y":2}`), PrevSent: 10, PrevConfig: 7, PrevLazy: []byte(`{"@x":1}`)}}))
	// A stale writer that still thinks 2 is the latest conflicts.
	err = s.AdvanceSlidingConn(ctx(), id, 2, store.SlidingConnUpdate{Seq: 4, PrevSeq: 2}, nil)
	wantErr(t, err, store.ErrConflict)
	rooms := roomsByID(t, s, id)
	if r := rooms["!a"]; r.Seq != 3 || r.Sent != 12 || r.Config != 8 || r.PrevSent != 10 || r.PrevConfig != 7 ||
		string(r.Lazy) != `{"@x":1,"@y":2}` || string(r.PrevLazy) != `{"@x":1}` {
		t.Fatalf("!a %+v", r)
	}
	// The client retries from 2 (it never got 3): position 4 from 2 sends
	// only !b; !a goes back to how it was at 2.
	must(t, s.AdvanceSlidingConn(ctx(), id, 3, store.SlidingConnUpdate{Seq: 4, PrevSeq: 2, State: []byte("s4"), PrevState: []byte("s2"), UpdatedTS: 130},
		[]store.SlidingRoom{{RoomID: "!b", Seq: 4, Sent: 15, Config: 7, PrevSent: 10, PrevConfig: 7}}))
	rooms = roomsByID(t, s, id)
	if r := rooms["!a"]; r.Sent != 10 || r.Config != 7 || r.Seq == 3 || r.Seq == 4 || string(r.Lazy) != `{"@x":1}` {
		t.Fatalf("!a not rolled back: %+v", r)
	}
	if r := rooms["!b"]; r.Seq != 4 || r.Sent != 15 || r.PrevSent != 10 || len(r.Lazy) != 0 {
		t.Fatalf("!b %+v", r)
	}
	got, _ = s.SlidingConn(ctx(), "@a:hs", "D", "room-list")
	if got.Seq != 4 || got.PrevSeq != 2 || string(got.State) != "s4" || string(got.PrevState) != "s2" || got.UpdatedTS != 130 {
		t.Fatalf("conn after retry %+v", got)
	}
	must(t, s.TouchSlidingConn(ctx(), id, 140))

	// Replacing the connection drops its rooms; the device keeps at most 3
	// connections (the least recently used go); old ones expire.
	id2, err := s.NewSlidingConn(ctx(), &store.SlidingConn{UserID: "@a:hs", DeviceID: "D", ConnID: "room-list", Seq: 1, UpdatedTS: 150}, 3, 0)
	must(t, err)
	if id2 == id || len(roomsByID(t, s, id)) != 0 || len(roomsByID(t, s, id2)) != 0 {
		t.Fatalf("replaced connection kept its rooms")
	}
	for i, name := range []string{"e1", "e2", "e3"} {
		_, err := s.NewSlidingConn(ctx(), &store.SlidingConn{UserID: "@a:hs", DeviceID: "D", ConnID: name, Seq: 1, UpdatedTS: int64(160 + i)}, 3, 0)
		must(t, err)
	}
	if _, err := s.SlidingConn(ctx(), "@a:hs", "D", "room-list"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the least recently used connection beyond 3 was kept: %v", err)
	}
	for _, name := range []string{"e1", "e2", "e3"} {
		if _, err := s.SlidingConn(ctx(), "@a:hs", "D", name); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	_, err = s.NewSlidingConn(ctx(), &store.SlidingConn{UserID: "@b:hs", DeviceID: "E", ConnID: "x", Seq: 1, UpdatedTS: 1000}, 3, 162)
	must(t, err)
	if _, err := s.SlidingConn(ctx(), "@a:hs", "D", "e1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("expired connection kept: %v", err)
	}
	if _, err := s.SlidingConn(ctx(), "@a:hs", "D", "e3"); err != nil {
		t.Fatalf("unexpired connection dropped: %v", err)
	}
}

func roomsByID(t *testing.T, s store.Store, conn int64) map[string]store.SlidingRoom {
	t.Helper()
	rows, err := s.SlidingRooms(ctx(), conn)
	must(t, err)
	out := map[string]store.SlidingRoom{}
	for _, r := range rows {
		out[r.RoomID] = r
	}
	return out
}

func testLatestEventPositions(t *testing.T, s store.Store) {
	r := newRoom(t, s, "!r:x", "@a:x")
	o := newRoom(t, s, "!o:x", "@b:x")
	createdR := maxPos(t, s) // !o's create is the newest so far; !r's before it
	_, p1 := r.msg(t, "@a:x", "one")
	mid := maxPos(t, s)
	r.send(t, r.member("@c:x", "join")) // not a bump type
	_, p2 := o.msg(t, "@b:x", "two")
	top := maxPos(t, s)
	bump := []string{"m.room.create", "m.room.message"}
	got, err := s.LatestEventPositions(ctx(), []string{"!r:x", "!o:x", "!none:x"}, bump, top)
	must(t, err)
	if len(got) != 2 || got["!r:x"] != p1 || got["!o:x"] != p2 {
		t.Fatalf("latest %v, want !r:x %d, !o:x %d", got, p1, p2)
	}
	got, err = s.LatestEventPositions(ctx(), []string{"!r:x", "!o:x"}, bump, mid)
	must(t, err)
	if got["!r:x"] != p1 || got["!o:x"] == p2 || got["!o:x"] == 0 || got["!o:x"] > createdR {
		t.Fatalf("at %d: %v", mid, got)
	}
	got, err = s.LatestEventPositions(ctx(), []string{"!r:x"}, []string{"m.room.member"}, top)
	must(t, err)
	if got["!r:x"] <= p1 {
		t.Fatalf("member: %v", got)
	}
	// More rooms than a statement's list holds.
	many := make([]string, 2500)
	for i := range many {
		many[i] = "!n" + string(rune('a'+i%26)) + ":x" + string(rune('0'+i/26%10)) + string(rune('0'+i/260))
	}
	many[1234] = "!r:x"
	got, err = s.LatestEventPositions(ctx(), many, bump, top)
	must(t, err)
	if len(got) != 1 || got["!r:x"] != p1 {
		t.Fatalf("in a long list: %v", got)
	}
}
