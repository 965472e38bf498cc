package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"conclave/internal/store"
)

func testCreateRoomAtomic(t *testing.T, s store.Store) {
	r := newRoom(t, s, "!r:x", "@a:x")
	before := maxPos(t, s)
	if before < 2 {
		t.Fatalf("max pos %d after a room with two events", before)
	}
	// The same room ID again: ErrConflict, nothing written.
	again := &room{s: s, id: "!r:x", n: 100}
	e := again.ev("m.room.create", sk(""), "@b:x", `{}`)
	_, err := s.CreateRoom(ctx(), &store.Room{RoomID: "!r:x", Version: "10", Creator: "@b:x"}, []store.NewEvent{e})
	wantErr(t, err, store.ErrConflict)
	if _, err := s.GetEvent(ctx(), e.EventID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("event of a refused room: %v", err)
	}
	// A new room whose second event repeats an existing event ID: nothing of
	// it is written, not even the room.
	r2 := &room{s: s, id: "!r2:x"}
	c := r2.ev("m.room.create", sk(""), "@b:x", `{}`)
	dup := r2.ev("m.room.member", sk("@b:x"), "@b:x", `{"membership":"join"}`)
	dup.EventID = r.head[0]
	_, err = s.CreateRoom(ctx(), &store.Room{RoomID: "!r2:x", Version: "10", Creator: "@b:x"}, []store.NewEvent{c, dup})
	wantErr(t, err, store.ErrConflict)
	_, err = s.GetRoom(ctx(), "!r2:x")
	wantErr(t, err, store.ErrNotFound)
	if _, err := s.GetEvent(ctx(), c.EventID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("create event of a failed room: %v", err)
	}
	if p := maxPos(t, s); p != before {
		t.Fatalf("stream moved from %d to %d on failed writes", before, p)
	}
	got, err := s.GetRoom(ctx(), "!r:x")
	must(t, err)
	if got.Version != "10" || got.Creator != "@a:x" || got.CreatedTS != 1 || got.Public {
		t.Fatalf("room %+v", got)
	}
	_, err = s.GetRoom(ctx(), "!nope:x")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.LoadRoomSnapshot(ctx(), "!nope:x")
	wantErr(t, err, store.ErrNotFound)
}

func testPersistEvents(t *testing.T, s store.Store) {
	r := newRoom(t, s, "!r:x", "@a:x")
	name1 := r.ev("m.room.name", sk(""), "@a:x", `{"name":"one"}`)
	p1 := r.send(t, name1)
	name2 := r.ev("m.room.name", sk(""), "@a:x", `{"name":"two"}`)
	name2.ReplacesState = name1.EventID
	msg := r.ev("m.room.message", nil, "@a:x", `{"body":"hi"}`)
	msg.SenderDevice, msg.TxnID = "DEV", "txn1"
	p2 := r.send(t, name2, msg)
	if !(p1[0] < p2[0] && p2[0] < p2[1]) {
		t.Fatalf("positions not increasing: %v %v", p1, p2)
	}
	if m := maxPos(t, s); m != p2[1] {
		t.Fatalf("max pos %d, last written %d", m, p2[1])
	}
	snap, err := s.LoadRoomSnapshot(ctx(), "!r:x")
	must(t, err)
	equal(t, "extremities", snap.Extremities, []string{msg.EventID})
	if snap.MaxDepth != r.depth {
		t.Fatalf("max depth %d, want %d", snap.MaxDepth, r.depth)
	}
	state := map[string]string{}
	for _, e := range snap.State {
		state[e.Type+"|"+*e.StateKey] = e.EventID
	}
	equal(t, "state", state, map[string]string{"m.room.create|": "$r:x-1", "m.room.member|@a:x": "$r:x-2", "m.room.name|": name2.EventID})

	got, err := s.GetEvent(ctx(), name2.EventID)
	must(t, err)
	if got.Pos != p2[0] || got.RoomID != "!r:x" || string(got.JSON) != string(name2.JSON) || got.ReplacesState != name1.EventID ||
		got.Type != "m.room.name" || got.StateKey == nil || *got.StateKey != "" || got.Sender != "@a:x" {
		t.Fatalf("stored event %+v", got)
	}
	got, _ = s.GetEvent(ctx(), msg.EventID)
	if got.StateKey != nil || got.SenderDevice != "DEV" || got.TxnID != "txn1" {
		t.Fatalf("stored message %+v", got)
	}
	_, err = s.GetEvent(ctx(), "$nope")
	wantErr(t, err, store.ErrNotFound)
	evs, err := s.GetEvents(ctx(), []string{msg.EventID, "$nope", name1.EventID})
	must(t, err)
	equal(t, "GetEvents", sorted(eventIDs(evs)), sorted([]string{msg.EventID, name1.EventID}))

	// Transaction IDs map to events, per device and room.
	id, err := s.EventByTxn(ctx(), "@a:x", "DEV", "!r:x", "txn1")
	must(t, err)
	equal(t, "txn", id, msg.EventID)
	_, err = s.EventByTxn(ctx(), "@a:x", "OTHER", "!r:x", "txn1")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.EventByTxn(ctx(), "@a:x", "DEV", "!other:x", "txn1")
	wantErr(t, err, store.ErrNotFound)

	// StateAt and StateEventsOf.
	at, err := s.StateAt(ctx(), "!r:x", p1[0])
	must(t, err)
	if !containsID(at, name1.EventID) || containsID(at, name2.EventID) || len(at) != 3 {
		t.Fatalf("state at %d: %v", p1[0], eventIDs(at))
	}
	hist, err := s.StateEventsOf(ctx(), "!r:x", "m.room.name", "")
	must(t, err)
	equal(t, "state history", eventIDs(hist), []string{name1.EventID, name2.EventID})

	// Redactions mark their target once, only in the same room.
	red := r.ev("m.room.redaction", nil, "@a:x", `{}`)
	red.Redacts = msg.EventID
	r.send(t, red)
	red2 := r.ev("m.room.redaction", nil, "@a:x", `{}`)
	red2.Redacts = msg.EventID
	red3 := r.ev("m.room.redaction", nil, "@a:x", `{}`)
	red3.Redacts = "$unknown"
	r.send(t, red2, red3)
	got, _ = s.GetEvent(ctx(), msg.EventID)
	equal(t, "redacted_by", got.RedactedBy, red.EventID)
	o := newRoom(t, s, "!o:x", "@a:x")
	cross := o.ev("m.room.redaction", nil, "@a:x", `{}`)
	cross.Redacts = name1.EventID
	o.send(t, cross)
	got, _ = s.GetEvent(ctx(), name1.EventID)
	equal(t, "cross-room redaction", got.RedactedBy, "")

	// An empty PersistEvents writes nothing.
	before := maxPos(t, s)
	pos, err := s.PersistEvents(ctx(), "!r:x", nil)
	must(t, err)
	if len(pos) != 0 || maxPos(t, s) != before {
		t.Fatal("empty PersistEvents wrote something")
	}
	must(t, s.SetRoomPublic(ctx(), "!r:x", true))
	wantErr(t, s.SetRoomPublic(ctx(), "!nope:x", true), store.ErrNotFound)
	ids, err := s.PublicRoomIDs(ctx())
	must(t, err)
	equal(t, "public rooms", ids, []string{"!r:x"})
}

func containsID(evs []store.StoredEvent, id string) bool {
	for _, e := range evs {
		if e.EventID == id {
			return true
		}
	}
	return false
}

func testPersistEventsAtomic(t *testing.T, s store.Store) {
	r := newRoom(t, s, "!r:x", "@a:x")
	m := r.ev("m.room.message", nil, "@a:x", `{}`)
	m.SenderDevice, m.TxnID = "D", "t1"
	r.send(t, m)
	before := maxPos(t, s)
	snap0, _ := s.LoadRoomSnapshot(ctx(), "!r:x")
	// A batch whose second event reuses a transaction ID: nothing of it lands.
	name := r.ev("m.room.name", sk(""), "@a:x", `{"name":"n"}`)
	dup := r.ev("m.room.message", nil, "@a:x", `{}`)
	dup.SenderDevice, dup.TxnID = "D", "t1"
	dup.PrevEvents = []string{name.EventID}
	_, err := s.PersistEvents(ctx(), "!r:x", []store.NewEvent{name, dup})
	wantErr(t, err, store.ErrConflict)
	// A batch whose second event repeats an event ID.
	name.EventID = "$fresh"
	dupID := r.ev("m.room.message", nil, "@a:x", `{}`)
	dupID.EventID = m.EventID
	dupID.PrevEvents = []string{name.EventID}
	_, err = s.PersistEvents(ctx(), "!r:x", []store.NewEvent{name, dupID})
	wantErr(t, err, store.ErrConflict)
	if p := maxPos(t, s); p != before {
		t.Fatalf("stream moved %d → %d", before, p)
	}
	snap, _ := s.LoadRoomSnapshot(ctx(), "!r:x")
	equal(t, "extremities", snap.Extremities, snap0.Extremities)
	equal(t, "state", len(snap.State), len(snap0.State))
	for _, id := range []string{"$fresh", name.EventID} {
		if _, err := s.GetEvent(ctx(), id); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("%s written by a failed batch: %v", id, err)
		}
	}
}

func testRoomChanged(t *testing.T, s store.Store) {
	r := newRoom(t, s, "!r:x", "@a:x")
	stale := slices0(r.head)
	r.msg(t, "@a:x", "one")
	before := maxPos(t, s)
	e := r.ev("m.room.message", nil, "@a:x", `{}`)
	e.PrevEvents = stale
	_, err := s.PersistEvents(ctx(), "!r:x", []store.NewEvent{e})
	wantErr(t, err, store.ErrRoomChanged)
	if maxPos(t, s) != before {
		t.Fatal("a refused write moved the stream")
	}
	if _, err := s.GetEvent(ctx(), e.EventID); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("a refused write stored its event")
	}
	// Without PrevEvents there is no check (callers that do not track heads).
	e.PrevEvents = nil
	if _, err := s.PersistEvents(ctx(), "!r:x", []store.NewEvent{e}); err != nil {
		t.Fatal(err)
	}
}

func slices0(s []string) []string { return append([]string(nil), s...) }

// testConcurrentRoomWriters runs writers that each build on the head they
// last saw: every write either lands on the current head or is refused with
// ErrRoomChanged, so the room stays one line.
func testConcurrentRoomWriters(t *testing.T, s store.Store) {
	newRoom(t, s, "!r:x", "@a:x")
	const writers, each = 4, 15
	var wg sync.WaitGroup
	var mu sync.Mutex
	landed := 0
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; {
				snap, err := s.LoadRoomSnapshot(ctx(), "!r:x")
				if err != nil {
					errs <- err
					return
				}
				e := store.NewEvent{EventID: fmt.Sprintf("$w%d-%d", w, i), RoomID: "!r:x", Type: "m.room.message", Sender: "@a:x",
					Depth: snap.MaxDepth + 1, JSON: []byte(`{}`), PrevEvents: snap.Extremities}
				_, err = s.PersistEvents(ctx(), "!r:x", []store.NewEvent{e})
				if errors.Is(err, store.ErrRoomChanged) {
					continue
				}
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				landed++
				mu.Unlock()
				i++
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	evs, err := s.RoomEvents(ctx(), store.RoomEventsQuery{RoomID: "!r:x", Limit: 1000})
	must(t, err)
	if len(evs) != 2+writers*each || landed != writers*each {
		t.Fatalf("%d events, %d landed", len(evs), landed)
	}
	// Depth rises by one per event: nobody built on a head that had moved.
	for i := 1; i < len(evs); i++ {
		if evs[i].Pos <= evs[i-1].Pos {
			t.Fatal("positions not increasing")
		}
	}
	snap, _ := s.LoadRoomSnapshot(ctx(), "!r:x")
	if snap.MaxDepth != int64(2+writers*each) || len(snap.Extremities) != 1 {
		t.Fatalf("depth %d, extremities %v", snap.MaxDepth, snap.Extremities)
	}
}

func testRoomEventsQuery(t *testing.T, s store.Store) {
	r := newRoom(t, s, "!r:x", "@a:x")
	start := maxPos(t, s)
	var ids []string
	add := func(typ, sender string, url bool) {
		e := r.ev(typ, nil, sender, `{}`)
		e.ContainsURL = url
		r.send(t, e)
		ids = append(ids, e.EventID)
	}
	add("m.room.message", "@a:x", false) // 0
	add("m.room.message", "@b:x", true)  // 1
	add("m.reaction", "@a:x", false)     // 2
	add("org.x_y.custom", "@b:x", false) // 3
	add("org.x%y.custom", "@a:x", true)  // 4
	add("M.ROOM.MESSAGE", "@a:x", false) // 5
	q := func(q store.RoomEventsQuery) []string {
		t.Helper()
		if q.RoomID == "" {
			q.RoomID = "!r:x"
		}
		if q.After == 0 {
			q.After = start
		}
		evs, err := s.RoomEvents(ctx(), q)
		must(t, err)
		return eventIDs(evs)
	}
	equal(t, "all forwards", q(store.RoomEventsQuery{Limit: 100}), ids)
	equal(t, "limit", q(store.RoomEventsQuery{Limit: 2}), ids[:2])
	equal(t, "backwards", q(store.RoomEventsQuery{Limit: 2, Backwards: true}), []string{ids[5], ids[4]})
	e2, _ := s.GetEvent(ctx(), ids[2])
	equal(t, "before", q(store.RoomEventsQuery{Before: e2.Pos, Backwards: true, Limit: 10}), []string{ids[1], ids[0]})
	equal(t, "after", q(store.RoomEventsQuery{After: e2.Pos, Limit: 10}), ids[3:])
	equal(t, "types", q(store.RoomEventsQuery{Types: []string{"m.room.message"}, Limit: 10}), []string{ids[0], ids[1]})
	equal(t, "wildcard", q(store.RoomEventsQuery{Types: []string{"m.room.*", "m.reaction"}, Limit: 10}), []string{ids[0], ids[1], ids[2]})
	equal(t, "wildcard metacharacters", q(store.RoomEventsQuery{Types: []string{"org.x_*"}, Limit: 10}), []string{ids[3]})
	equal(t, "wildcard percent", q(store.RoomEventsQuery{Types: []string{"org.x%*"}, Limit: 10}), []string{ids[4]})
	equal(t, "not types", q(store.RoomEventsQuery{NotTypes: []string{"m.room.*", "org.*"}, Limit: 10}), []string{ids[2], ids[5]})
	equal(t, "senders", q(store.RoomEventsQuery{Senders: []string{"@b:x"}, Limit: 10}), []string{ids[1], ids[3]})
	equal(t, "not senders", q(store.RoomEventsQuery{NotSenders: []string{"@a:x"}, Limit: 10}), []string{ids[1], ids[3]})
	yes, no := true, false
	equal(t, "contains_url", q(store.RoomEventsQuery{ContainsURL: &yes, Limit: 10}), []string{ids[1], ids[4]})
	equal(t, "no url", len(q(store.RoomEventsQuery{ContainsURL: &no, Limit: 10})), 4)
	equal(t, "other room", q(store.RoomEventsQuery{RoomID: "!other:x", Limit: 10}), []string(nil))
}

func testSyncQueries(t *testing.T, s store.Store) {
	r := newRoom(t, s, "!r:x", "@a:x")
	o := newRoom(t, s, "!o:x", "@b:x")
	mid := maxPos(t, s)
	r.send(t, r.member("@c:x", "join"))
	_, p := r.msg(t, "@c:x", "hello @a:x")
	r.msg(t, "@c:x", "plain")
	r.msg(t, "@a:x", "own")
	top := maxPos(t, s)
	rooms, err := s.ChangedRooms(ctx(), mid, top)
	must(t, err)
	equal(t, "changed rooms", rooms, []string{"!r:x"})
	rooms, _ = s.ChangedRooms(ctx(), 0, top)
	equal(t, "all changed", sorted(rooms), []string{"!o:x", "!r:x"})
	_ = o
	st, err := s.StateBetween(ctx(), "!r:x", mid, top+1)
	must(t, err)
	if len(st) != 1 || *st[0].StateKey != "@c:x" {
		t.Fatalf("state between: %v", eventIDs(st))
	}
	_ = p
}

// testNotifications: push actions written with their events drive unread
// counts per thread, reset by unthreaded and threaded receipts (public or
// private), and GET /notifications' listing.
func tc(n, h int) store.ThreadCounts { return store.ThreadCounts{Notifications: n, Highlights: h} }

func testNotifications(t *testing.T, s store.Store) {
	r := newRoom(t, s, "!r:x", "@a:x")
	r.send(t, r.member("@c:x", "join"))
	push := func(body, thread string, hl bool) (string, int64) {
		t.Helper()
		e := r.ev("m.room.message", nil, "@c:x", `{"msgtype":"m.text","body":`+jsonString(body)+`}`)
		e.Push = []store.PushAction{{UserID: "@a:x", ThreadID: thread, Highlight: hl, Actions: []byte(`["notify"]`)}}
		if hl {
			e.Push = append(e.Push, store.PushAction{UserID: "@b:x", ThreadID: thread, Actions: []byte(`["notify"]`)})
		}
		return e.EventID, r.send(t, e)[0]
	}
	count := func(since int64) store.Unread {
		t.Helper()
		u, err := s.UnreadCounts(ctx(), "!r:x", "@a:x", since, maxPos(t, s))
		must(t, err)
		return u
	}
	check := func(what string, u store.Unread, want map[string]store.ThreadCounts) {
		t.Helper()
		got := u.Threads
		if got == nil {
			got = map[string]store.ThreadCounts{}
		}
		equal(t, what, got, want)
	}
	m1, _ := push("one", "main", false)
	_, p2 := push("two @a", "main", true)
	root := "$root"
	t1, _ := push("in thread", root, false)
	push("in thread again", root, true)
	u := count(0)
	check("all", u, map[string]store.ThreadCounts{"main": tc(2, 1), root: tc(2, 1)})
	n, h := u.Total()
	equal(t, "total", [2]int{n, h}, [2]int{4, 2})
	// Incremental: after p2 only the thread's two.
	u2 := count(p2)
	check("since p2", u2, map[string]store.ThreadCounts{root: tc(2, 1)})
	equal(t, "same read point", u2.ReadPos, u.ReadPos)
	equal(t, "sum", u.Add(store.Unread{}).Threads, u.Threads)

	// A threaded receipt clears its thread up to the event only.
	_, err := s.PutReceipt(ctx(), &store.Receipt{RoomID: "!r:x", UserID: "@a:x", Type: "m.read", ThreadID: root, EventID: t1, TS: 1})
	must(t, err)
	u3 := count(0)
	check("thread receipt", u3, map[string]store.ThreadCounts{"main": tc(2, 1), root: tc(1, 1)})
	if u3.ReadPos <= u.ReadPos {
		t.Fatalf("read point did not move: %d then %d", u.ReadPos, u3.ReadPos)
	}
	// A private unthreaded receipt clears every thread up to its event.
	_, err = s.PutReceipt(ctx(), &store.Receipt{RoomID: "!r:x", UserID: "@a:x", Type: "m.read.private", EventID: m1, TS: 2})
	must(t, err)
	check("unthreaded private receipt", count(0), map[string]store.ThreadCounts{"main": tc(1, 1), root: tc(1, 1)})

	// GET /notifications: newest first, paging, highlights only, read flags.
	ns, err := s.NotificationsOf(ctx(), "@a:x", 0, 10, false)
	must(t, err)
	if len(ns) != 4 || ns[0].Pos <= ns[1].Pos || ns[3].EventID != m1 || !ns[3].Read || ns[0].Read || !ns[1].Read || ns[2].Read || ns[0].RoomID != "!r:x" {
		t.Fatalf("notifications %+v", ns)
	}
	page, err := s.NotificationsOf(ctx(), "@a:x", ns[1].Pos, 10, false)
	must(t, err)
	equal(t, "page", len(page), 2)
	hls, err := s.NotificationsOf(ctx(), "@a:x", 0, 10, true)
	must(t, err)
	equal(t, "highlights", len(hls), 2)
	equal(t, "actions", string(hls[0].Actions), `["notify"]`)
	bs, err := s.NotificationsOf(ctx(), "@b:x", 0, 10, false)
	must(t, err)
	equal(t, "other user", len(bs), 2)
}

func testMemberships(t *testing.T, s store.Store) {
	r := newRoom(t, s, "!r:x", "@a:x")
	pos := r.send(t, r.member("@b:x", "invite"))
	m, err := s.MembershipOf(ctx(), "!r:x", "@b:x")
	must(t, err)
	equal(t, "invite", m, "invite")
	if m, _ := s.MembershipOf(ctx(), "!r:x", "@z:x"); m != "" {
		t.Fatalf("membership of a stranger %q", m)
	}
	ms, err := s.UserMemberships(ctx(), "@b:x")
	must(t, err)
	if len(ms) != 1 || ms[0].RoomID != "!r:x" || ms[0].Membership != "invite" || ms[0].Pos != pos[0] {
		t.Fatalf("memberships %+v", ms)
	}
	if ok, _ := s.SharesRoom(ctx(), "@a:x", "@b:x"); ok {
		t.Fatal("an invite is not sharing a room")
	}
	r.send(t, r.member("@b:x", "join"))
	if ok, _ := s.SharesRoom(ctx(), "@a:x", "@b:x"); !ok {
		t.Fatal("joined users share the room")
	}
	members, err := s.RoomMembers(ctx(), "!r:x")
	must(t, err)
	if len(members) != 2 {
		t.Fatalf("members %+v", members)
	}
	r.send(t, r.member("@b:x", "leave"))
	must(t, s.ForgetRoom(ctx(), "@b:x", "!r:x"))
	if f, err := s.IsForgotten(ctx(), "@b:x", "!r:x"); err != nil || !f {
		t.Fatalf("forgotten %v %v", f, err)
	}
	if f, err := s.IsForgotten(ctx(), "@z:x", "!r:x"); err != nil || f {
		t.Fatalf("stranger forgotten %v %v", f, err)
	}
	// A new membership event clears the forgotten flag.
	r.send(t, r.member("@b:x", "join"))
	if f, _ := s.IsForgotten(ctx(), "@b:x", "!r:x"); f {
		t.Fatal("rejoined room still forgotten")
	}
}

func testAliases(t *testing.T, s store.Store) {
	must(t, s.CreateAlias(ctx(), "#b:x", "!r:x", "@a:x"))
	must(t, s.CreateAlias(ctx(), "#a:x", "!r:x", "@a:x"))
	must(t, s.CreateAlias(ctx(), "#B:x", "!r:x", "@a:x"))
	wantErr(t, s.CreateAlias(ctx(), "#a:x", "!o:x", "@b:x"), store.ErrConflict)
	room, creator, err := s.GetAlias(ctx(), "#a:x")
	must(t, err)
	if room != "!r:x" || creator != "@a:x" {
		t.Fatalf("alias %s %s", room, creator)
	}
	_, _, err = s.GetAlias(ctx(), "#nope:x")
	wantErr(t, err, store.ErrNotFound)
	as, err := s.AliasesForRoom(ctx(), "!r:x")
	must(t, err)
	equal(t, "aliases in byte order", as, []string{"#B:x", "#a:x", "#b:x"})
	must(t, s.MoveAliases(ctx(), "!r:x", "!new:x"))
	as, _ = s.AliasesForRoom(ctx(), "!new:x")
	equal(t, "moved", len(as), 3)
	must(t, s.DeleteAlias(ctx(), "#a:x"))
	wantErr(t, s.DeleteAlias(ctx(), "#a:x"), store.ErrNotFound)
}

// testManyRoomWritersIsolated writes into many rooms at once (the SQLite
// store commits such calls together) while some calls fail: a failing call
// must not take the others down, leave no rows, and positions stay unique.
func testManyRoomWritersIsolated(t *testing.T, s store.Store) {
	const rooms, each = 12, 10
	var wg sync.WaitGroup
	errs := make(chan error, rooms)
	for w := 0; w < rooms; w++ {
		r := newRoom(t, s, fmt.Sprintf("!m%d:x", w), "@a:x")
		wg.Add(1)
		go func(w int, r *room) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				e := r.ev("m.room.message", nil, "@a:x", `{"body":"x"}`)
				e.Depth = r.depth + 1
				if i%3 == 2 {
					// Reuse an event ID another room already stored: a conflict.
					bad := e
					bad.EventID = "$m0:x-1"
					if _, err := s.PersistEvents(ctx(), r.id, []store.NewEvent{bad}); !errors.Is(err, store.ErrConflict) {
						errs <- fmt.Errorf("room %d: duplicate event ID gave %v", w, err)
						return
					}
				}
				if _, err := s.PersistEvents(ctx(), r.id, []store.NewEvent{e}); err != nil {
					errs <- fmt.Errorf("room %d: %v", w, err)
					return
				}
				r.head = []string{e.EventID}
				r.depth++
			}
		}(w, r)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := map[int64]bool{}
	for w := 0; w < rooms; w++ {
		evs, err := s.RoomEvents(ctx(), store.RoomEventsQuery{RoomID: fmt.Sprintf("!m%d:x", w), Limit: 100})
		must(t, err)
		msgs := 0
		for _, e := range evs {
			if seen[e.Pos] {
				t.Fatalf("position %d used twice", e.Pos)
			}
			seen[e.Pos] = true
			if e.Type == "m.room.message" {
				msgs++
			}
		}
		if msgs != each {
			t.Fatalf("room %d has %d messages, want %d", w, msgs, each)
		}
	}
}

// testStateAfterEveryEvent: the state after each event of a room whose
// state changes far more often than store.MaxStateGroupChain (so deltas and
// snapshots alternate), mixed with messages and multi-event writes, is what
// a model replaying the history says, at every position.
func testStateAfterEveryEvent(t *testing.T, s store.Store) {
	r := newRoom(t, s, "!g:x", "@a:x")
	type key struct{ typ, sk string }
	model := map[key]string{}
	first, err := s.StateAt(ctx(), "!g:x", maxPos(t, s))
	must(t, err)
	for _, e := range first {
		model[key{e.Type, *e.StateKey}] = e.EventID
	}
	if len(model) != 2 {
		t.Fatalf("state after creation: %v", eventIDs(first))
	}
	type point struct {
		pos   int64
		state map[key]string
	}
	var points []point
	snapshot := func(pos int64) {
		c := make(map[key]string, len(model))
		for k, v := range model {
			c[k] = v
		}
		points = append(points, point{pos, c})
	}
	n := 0
	for len(points) < 2*store.MaxStateGroupChain+50 {
		n++
		var evs []store.NewEvent
		for i := 0; i < 1+n%3; i++ {
			switch (n + i) % 4 {
			case 0:
				evs = append(evs, r.ev("m.room.message", nil, "@a:x", `{"body":"m"}`))
			case 1:
				evs = append(evs, r.member(fmt.Sprintf("@u%d:x", n%37), []string{"join", "leave"}[n%2]))
			default:
				evs = append(evs, r.ev("m.room.topic", sk(fmt.Sprint(n%5)), "@a:x", fmt.Sprintf(`{"topic":"%d"}`, n)))
			}
		}
		positions := r.send(t, evs...)
		for i, e := range evs {
			if e.StateKey != nil {
				model[key{e.Type, *e.StateKey}] = e.EventID
			}
			snapshot(positions[i])
		}
	}
	// Another room's writes in between must not leak in.
	other := newRoom(t, s, "!other-g:x", "@b:x")
	other.msg(t, "@b:x", "x")
	for _, p := range points {
		got, err := s.StateAt(ctx(), "!g:x", p.pos)
		must(t, err)
		if len(got) != len(p.state) {
			t.Fatalf("state after pos %d: %d events, want %d", p.pos, len(got), len(p.state))
		}
		for _, e := range got {
			if e.StateKey == nil || p.state[key{e.Type, *e.StateKey}] != e.EventID {
				t.Fatalf("state after pos %d: %s is not the model's", p.pos, e.EventID)
			}
		}
	}
	snap, err := s.LoadRoomSnapshot(ctx(), "!g:x")
	must(t, err)
	if len(snap.State) != len(model) {
		t.Fatalf("current state: %d events, want %d", len(snap.State), len(model))
	}
}

// LinearHistory writes a room with a long linear history and returns a check
// that the state after every one of its events is still what it was, and
// that the room goes on from there: for a test of a migration that reworks
// how state is kept (write, downgrade the schema, reopen, check).
func LinearHistory(t *testing.T, s store.Store, roomID string) func(t *testing.T, s store.Store) {
	r := newRoom(t, s, roomID, "@a:x")
	var positions []int64
	for i := 0; i < 150; i++ {
		var e store.NewEvent
		switch i % 3 {
		case 0:
			e = r.ev("m.room.message", nil, "@a:x", `{"body":"m"}`)
		case 1:
			e = r.member(fmt.Sprintf("@u%d:x", i%11), []string{"join", "leave"}[i%2])
		default:
			e = r.ev("m.room.topic", sk(""), "@a:x", fmt.Sprintf(`{"topic":"%d"}`, i))
		}
		positions = append(positions, r.send(t, e)...)
	}
	want := make(map[int64][]string, len(positions))
	for _, p := range positions {
		st, err := s.StateAt(ctx(), roomID, p)
		must(t, err)
		want[p] = sortedIDs(st)
	}
	return func(t *testing.T, s store.Store) {
		t.Helper()
		for _, p := range positions {
			st, err := s.StateAt(ctx(), roomID, p)
			must(t, err)
			equal(t, fmt.Sprintf("state after %d", p), sortedIDs(st), want[p])
		}
		r.s = s
		for i := 0; i < 20; i++ {
			r.send(t, r.member(fmt.Sprintf("@late%d:x", i%7), []string{"join", "leave"}[i%2]))
			p := r.send(t, r.ev("m.room.message", nil, "@a:x", `{"body":"after"}`))
			st, err := s.StateAt(ctx(), roomID, p[0])
			must(t, err)
			snap, err := s.LoadRoomSnapshot(ctx(), roomID)
			must(t, err)
			equal(t, "state after a new event", sortedIDs(st), sortedIDs(snap.State))
		}
	}
}

func sortedIDs(evs []store.StoredEvent) []string {
	ids := eventIDs(evs)
	slices.Sort(ids)
	return ids
}

// testPushQueue: a new pusher starts after the user's latest notification;
// due pushers have notifications after their cursor; one owner claims a
// pusher at a time until the claim ends; the cursor never moves back.
func testPushQueue(t *testing.T, s store.Store) {
	r := newRoom(t, s, "!r:x", "@a:x")
	notify := func() int64 {
		t.Helper()
		e := r.ev("m.room.message", nil, "@c:x", `{"msgtype":"m.text","body":"x"}`)
		e.Push = []store.PushAction{{UserID: "@a:x", ThreadID: "main", Actions: []byte(`["notify"]`)}}
		return r.send(t, e)[0]
	}
	old := notify()
	p := &store.Pusher{UserID: "@a:x", DeviceID: "D", AppID: "app", PushKey: "key", Kind: "http", Lang: "en", Data: []byte(`{"url":"https://x/_matrix/push/v1/notify"}`), CreatedTS: 1}
	must(t, s.SetPusher(ctx(), p, true, 10))
	due, err := s.DuePushers(ctx(), 1000, 10)
	must(t, err)
	equal(t, "nothing new: not due", len(due), 0)
	p1 := notify()
	p2 := notify()
	due, err = s.DuePushers(ctx(), 1000, 10)
	must(t, err)
	if len(due) != 1 || due[0].LastPos != old || due[0].PushKey != "key" || string(due[0].Data) != string(p.Data) {
		t.Fatalf("due: %+v (old %d)", due, old)
	}
	ns, err := s.PushPending(ctx(), "@a:x", due[0].LastPos, 10)
	must(t, err)
	if len(ns) != 2 || ns[0].Pos != p1 || ns[1].Pos != p2 || ns[0].RoomID != "!r:x" || ns[0].EventID == "" {
		t.Fatalf("pending: %+v", ns)
	}
	q := due[0]
	held, err := s.ClaimPusher(ctx(), &q, "one", 1000, 61000)
	must(t, err)
	equal(t, "claimed", held, true)
	other := due[0]
	held, err = s.ClaimPusher(ctx(), &other, "two", 2000, 62000)
	must(t, err)
	equal(t, "held by another", held, false)
	due, _ = s.DuePushers(ctx(), 2000, 10)
	equal(t, "claimed: not due", len(due), 0)
	ok, err := s.UpdatePusher(ctx(), &q, "one", p1, 0, 0, 61000)
	must(t, err)
	equal(t, "progress", ok, true)
	ok, err = s.UpdatePusher(ctx(), &q, "two", p2, 0, 0, 0)
	must(t, err)
	equal(t, "not the owner", ok, false)
	// Released with a retry time: due again once it has come.
	ok, _ = s.UpdatePusher(ctx(), &q, "one", old, 500, 5000, 0)
	equal(t, "release", ok, true)
	due, _ = s.DuePushers(ctx(), 4000, 10)
	equal(t, "before retry", len(due), 0)
	due, _ = s.DuePushers(ctx(), 5000, 10)
	if len(due) != 1 || due[0].LastPos != p1 || due[0].FailingSince != 500 {
		t.Fatalf("after retry (cursor kept at %d): %+v", p1, due)
	}
	// An expired claim can be taken by another owner.
	held, _ = s.ClaimPusher(ctx(), &other, "two", 70000, 130000)
	equal(t, "expired claim taken", held, true)
	must(t, s.DeletePusher(ctx(), "@a:x", "app", "key"))
	ok, _ = s.UpdatePusher(ctx(), &other, "two", p2, 0, 0, 0)
	equal(t, "deleted", ok, false)
}

// testCommonNotifications: an event's common notification (PushCommon)
// applies to the users joined before it but its sender, unless they have a
// row of their own (PushOwn: another outcome, or nil Actions for none);
// counts, listings and the pushers' queue agree.
func testCommonNotifications(t *testing.T, s store.Store) {
	r := newRoom(t, s, "!c:x", "@a:x")
	for _, u := range []string{"@b:x", "@c:x", "@d:x"} {
		r.send(t, r.member(u, "join"))
	}
	e := r.ev("m.room.message", nil, "@a:x", `{"msgtype":"m.text","body":"hi"}`)
	notify, hl := []byte(`["notify"]`), []byte(`["notify",{"set_tweak":"highlight"}]`)
	e.Push = []store.PushAction{{UserID: "@b:x", ThreadID: "main", Actions: notify}, {UserID: "@c:x", ThreadID: "main", Highlight: true, Actions: hl}}
	e.PushCommon = &store.PushAction{ThreadID: "main", Actions: notify}
	e.PushOwn = []store.PushAction{e.Push[1], {UserID: "@d:x", ThreadID: "main"}}
	r.send(t, e)
	r.send(t, r.member("@e:x", "join")) // joined after: not theirs
	top := maxPos(t, s)
	for _, c := range []struct {
		user  string
		n, h  int
		pend  int
		listH int
	}{{"@a:x", 0, 0, 0, 0}, {"@b:x", 1, 0, 1, 0}, {"@c:x", 1, 1, 1, 1}, {"@d:x", 0, 0, 0, 0}, {"@e:x", 0, 0, 0, 0}} {
		u, err := s.UnreadCounts(ctx(), "!c:x", c.user, 0, top)
		must(t, err)
		n, h := u.Total()
		equal(t, c.user+" counts", [2]int{n, h}, [2]int{c.n, c.h})
		ns, err := s.NotificationsOf(ctx(), c.user, 0, 10, false)
		must(t, err)
		equal(t, c.user+" listed", len(ns), c.n)
		if len(ns) == 1 && (ns[0].EventID != e.EventID || ns[0].RoomID != "!c:x" || ns[0].Highlight != (c.h == 1) || ns[0].ThreadID != "main") {
			t.Fatalf("%s: %+v", c.user, ns[0])
		}
		hs, err := s.NotificationsOf(ctx(), c.user, 0, 10, true)
		must(t, err)
		equal(t, c.user+" highlights", len(hs), c.listH)
		ps, err := s.PushPending(ctx(), c.user, 0, 10)
		must(t, err)
		equal(t, c.user+" pending", len(ps), c.pend)
	}
	// b leaves: the count stops (b is no member), the listing keeps it.
	r.send(t, r.member("@b:x", "leave"))
	ns, err := s.NotificationsOf(ctx(), "@b:x", 0, 10, false)
	must(t, err)
	equal(t, "b after leaving", len(ns), 1)
	u, err := s.UnreadCounts(ctx(), "!c:x", "@b:x", 0, maxPos(t, s))
	must(t, err)
	n, _ := u.Total()
	equal(t, "b's count after leaving", n, 0)
}

// testPruneNotifications: old notifications go once read by everyone they
// apply to (a common row by every local member joined then), all of them
// past the absolute bound; "not notified" rows outlive their common row,
// and no count changes.
func testPruneNotifications(t *testing.T, s store.Store) {
	for _, u := range []string{"@pa:x", "@pb:x", "@pc:x", "@pd:x"} {
		must(t, s.CreateUser(ctx(), &store.User{UserID: u, CreatedTS: 1}))
	}
	r := newRoom(t, s, "!p:x", "@pa:x")
	for _, u := range []string{"@pb:x", "@pc:x", "@pd:x", "@remote:y"} {
		r.send(t, r.member(u, "join"))
	}
	notify := []byte(`["notify"]`)
	e1 := r.ev("m.room.message", nil, "@pa:x", `{"msgtype":"m.text","body":"one"}`)
	e1.Push = []store.PushAction{{UserID: "@pb:x", ThreadID: "main", Actions: notify}, {UserID: "@pc:x", ThreadID: "main", Actions: notify}}
	e1.PushCommon = &store.PushAction{ThreadID: "main", Actions: notify}
	e1.PushOwn = []store.PushAction{{UserID: "@pd:x", ThreadID: "main"}}
	e2 := r.ev("m.room.message", nil, "@pa:x", `{"msgtype":"m.text","body":"two"}`)
	e2.Push = []store.PushAction{{UserID: "@pb:x", ThreadID: "main", Actions: notify}, {UserID: "@pc:x", ThreadID: "main", Actions: notify}}
	r.send(t, e1, e2)
	counts := func() [3]int {
		t.Helper()
		var out [3]int
		for i, u := range []string{"@pb:x", "@pc:x", "@pd:x"} {
			c, err := s.UnreadCounts(ctx(), "!p:x", u, 0, maxPos(t, s))
			must(t, err)
			out[i], _ = c.Total()
		}
		return out
	}
	listed := func(u string) int {
		t.Helper()
		ns, err := s.NotificationsOf(ctx(), u, 0, 10, false)
		must(t, err)
		return len(ns)
	}
	prune := func(readBefore, allBefore int64) int64 {
		t.Helper()
		n, err := s.PruneNotifications(ctx(), readBefore, allBefore, 100)
		must(t, err)
		return n
	}
	equal(t, "counts", counts(), [3]int{2, 2, 0})
	equal(t, "nothing read", prune(1<<50, 0), int64(0))
	_, err := s.PutReceipt(ctx(), &store.Receipt{RoomID: "!p:x", UserID: "@pb:x", Type: "m.read", EventID: e2.EventID, TS: 1})
	must(t, err)
	equal(t, "too young", prune(e1.OriginServerTS, 0), int64(0))
	// b's own row of e2 goes; e1's common row stays for c, and d's "not
	// notified" row with it.
	equal(t, "b read", prune(1<<50, 0), int64(1))
	equal(t, "counts after b read", counts(), [3]int{0, 2, 0})
	equal(t, "d listed", listed("@pd:x"), 0)
	_, err = s.PutReceipt(ctx(), &store.Receipt{RoomID: "!p:x", UserID: "@pc:x", Type: "m.read.private", EventID: e2.EventID, TS: 2})
	must(t, err)
	// Everyone local has read e1 (the remote member does not count): the
	// common row, d's row and c's row of e2 go.
	equal(t, "all read", prune(1<<50, 0), int64(3))
	equal(t, "counts after all read", counts(), [3]int{0, 0, 0})
	for _, u := range []string{"@pb:x", "@pc:x", "@pd:x"} {
		equal(t, u+" listed", listed(u), 0)
	}
	// Past the absolute bound, unread ones go too.
	e3 := r.ev("m.room.message", nil, "@pa:x", `{"msgtype":"m.text","body":"three"}`)
	e3.Push = []store.PushAction{{UserID: "@pb:x", ThreadID: "main", Actions: notify}, {UserID: "@pc:x", ThreadID: "main", Actions: notify}}
	e3.PushCommon = &store.PushAction{ThreadID: "main", Actions: notify}
	r.send(t, e3)
	equal(t, "unread kept", prune(1<<50, e3.OriginServerTS), int64(0))
	equal(t, "counts of e3", counts(), [3]int{1, 1, 1})
	equal(t, "unread past the bound", prune(1<<50, 1<<50), int64(1))
	equal(t, "counts at the end", counts(), [3]int{0, 0, 0})
}

// testPruneNotificationsThreads: a threaded receipt covers its thread's
// rows for pruning as it does for counts. Each member's first row still
// needed bounds the room's pruning; the sender of every row (who never
// reads) needs none.
func testPruneNotificationsThreads(t *testing.T, s store.Store) {
	for _, u := range []string{"@ta:x", "@tb:x", "@tc:x"} {
		must(t, s.CreateUser(ctx(), &store.User{UserID: u, CreatedTS: 1}))
	}
	r := newRoom(t, s, "!t:x", "@ta:x")
	for _, u := range []string{"@tb:x", "@tc:x"} {
		r.send(t, r.member(u, "join"))
	}
	notify := []byte(`["notify"]`)
	common := func(thread, body string) store.NewEvent {
		e := r.ev("m.room.message", nil, "@ta:x", `{"msgtype":"m.text","body":"`+body+`"}`)
		e.Push = []store.PushAction{{UserID: "@tb:x", ThreadID: thread, Actions: notify}, {UserID: "@tc:x", ThreadID: thread, Actions: notify}}
		e.PushCommon = &store.PushAction{ThreadID: thread, Actions: notify}
		return e
	}
	e1 := common("main", "root")
	r.send(t, e1)
	t1 := common(e1.EventID, "in the thread")
	r.send(t, t1)
	e2 := common("main", "after")
	r.send(t, e2)
	receipt := func(u, thread, eventID string) {
		t.Helper()
		_, err := s.PutReceipt(ctx(), &store.Receipt{RoomID: r.id, UserID: u, Type: "m.read", ThreadID: thread, EventID: eventID, TS: 1})
		must(t, err)
	}
	counts := func() [2]int {
		t.Helper()
		var out [2]int
		for i, u := range []string{"@tb:x", "@tc:x"} {
			c, err := s.UnreadCounts(ctx(), r.id, u, 0, maxPos(t, s))
			must(t, err)
			out[i], _ = c.Total()
		}
		return out
	}
	// tb read everything; tc read the root (unthreaded) and the thread
	// (threaded), not what came after.
	receipt("@tb:x", "", e2.EventID)
	receipt("@tc:x", "", e1.EventID)
	receipt("@tc:x", e1.EventID, t1.EventID)
	equal(t, "counts before", counts(), [2]int{0, 1})
	n, err := s.PruneNotifications(ctx(), 1<<50, 0, 100)
	must(t, err)
	equal(t, "pruned: the root and the read thread", n, int64(2))
	equal(t, "counts after", counts(), [2]int{0, 1})
	ns, err := s.NotificationsOf(ctx(), "@tc:x", 0, 10, false)
	must(t, err)
	if len(ns) != 1 || ns[0].EventID != e2.EventID {
		t.Fatalf("tc's notifications after pruning: %+v", ns)
	}
}
