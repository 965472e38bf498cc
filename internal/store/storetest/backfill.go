package storetest

import (
	"math"
	"testing"

	"conclave/internal/store"
)

// testBackfill: a room joined over federation gets older history from
// another server. Backfilled events take negative positions, the oldest
// lowest; an outlier among them (a state event from the send_join answer)
// joins them; /messages (WithBackfilled) pages from the timeline into them
// in order, /sync's queries never meet them.
func testBackfill(t *testing.T, s store.Store) {
	_, err := s.CreateRoom(ctx(), &store.Room{RoomID: "!old:y", Version: "10", Creator: "@c:y", CreatedTS: 5}, nil)
	must(t, err)
	r := &room{s: s, id: "!old:y", ts: 1000}
	create := r.ev("m.room.create", sk(""), "@c:y", `{}`)
	cjoin := r.member("@c:y", "join")
	phoenix := r.ev("m.room.message", nil, "@c:y", `{"body":"phoenix"}`)
	must(t, s.PersistOutliers(ctx(), []store.NewEvent{create, cjoin, phoenix}))
	search := func(term string) []store.SearchHit {
		hits, _, err := s.SearchEvents(ctx(), &store.SearchQuery{Terms: []string{term}, RoomIDs: []string{"!old:y"}, Recent: true, Limit: 5})
		must(t, err)
		return hits
	}
	if hits := search("phoenix"); len(hits) != 0 {
		t.Fatalf("search finds an outlier: %+v", hits)
	}
	m1 := r.ev("m.room.message", nil, "@c:y", `{"body":"1"}`)
	m2 := r.ev("m.room.message", nil, "@c:y", `{"body":"2"}`)
	red := r.ev("m.room.redaction", nil, "@c:y", `{}`)
	red.Redacts = m1.EventID
	join := r.member("@me:x", "join")
	state := []store.StateEntry{{Type: "m.room.create", EventID: create.EventID}, {Type: "m.room.member", StateKey: "@c:y", EventID: cjoin.EventID, Membership: "join"}}
	current := append(state, store.StateEntry{Type: "m.room.member", StateKey: "@me:x", EventID: join.EventID, Membership: "join"})
	before := maxPos(t, s)
	joinPos, _, err := s.PersistGraphEvent(ctx(), &store.GraphWrite{Event: join, NewStateBefore: true, StateBeforeChanges: state,
		Extremities: []string{join.EventID}, CurrentResolved: true, CurrentChanges: current})
	must(t, err)

	early, err := s.EarliestEvents(ctx(), "!old:y", 5)
	must(t, err)
	equal(t, "earliest before backfilling", pduIDs(early), []string{join.EventID})

	// Two batches, newest first each: the second older than the first.
	bad := r.ev("m.room.message", nil, "@c:y", `{"body":"forged"}`)
	n, err := s.PersistBackfill(ctx(), "!old:y", []store.BackfillEvent{{Event: red}, {Event: m2}, {Event: bad, Rejected: true, RejectedReason: "no"}, {Event: m1}})
	must(t, err)
	if n != 3 {
		t.Fatalf("first batch: %d backfilled", n)
	}
	n, err = s.PersistBackfill(ctx(), "!old:y", []store.BackfillEvent{{Event: m1}, {Event: phoenix}, {Event: cjoin}, {Event: create}})
	must(t, err)
	if n != 3 {
		t.Fatalf("second batch: %d backfilled (m1 again must count nothing, the outliers must become backfilled)", n)
	}
	if maxPos(t, s) != joinPos || joinPos <= before {
		t.Fatalf("backfilling moved the stream: %d (join at %d)", maxPos(t, s), joinPos)
	}

	early, err = s.EarliestEvents(ctx(), "!old:y", 10)
	must(t, err)
	equal(t, "earliest after backfilling", pduIDs(early), []string{create.EventID, cjoin.EventID, phoenix.EventID, m1.EventID, m2.EventID, red.EventID, join.EventID})
	for _, p := range early[:6] {
		if p.Kind != store.KindBackfilled || p.Pos >= 0 {
			t.Fatalf("backfilled %s: kind %d pos %d", p.EventID, p.Kind, p.Pos)
		}
	}
	pdus, err := s.GetPDUs(ctx(), []string{bad.EventID})
	must(t, err)
	if len(pdus) != 1 || pdus[0].Kind != store.KindRejected {
		t.Fatalf("rejected backfilled event: %+v", pdus)
	}

	// /messages backwards from the join, two pages.
	page, err := s.RoomEvents(ctx(), store.RoomEventsQuery{RoomID: "!old:y", Backwards: true, Limit: 3, WithBackfilled: true,
		After: math.MinInt64, Before: joinPos + 1})
	must(t, err)
	equal(t, "first page", eventIDs(page), []string{join.EventID, red.EventID, m2.EventID})
	page, err = s.RoomEvents(ctx(), store.RoomEventsQuery{RoomID: "!old:y", Backwards: true, Limit: 10, WithBackfilled: true,
		After: math.MinInt64, Before: page[2].Pos})
	must(t, err)
	equal(t, "second page", eventIDs(page), []string{m1.EventID, phoenix.EventID, cjoin.EventID, create.EventID})
	if page[0].RedactedBy != red.EventID {
		t.Fatalf("backfilled redaction not applied: %+v", page[0])
	}
	// Forwards from the start.
	page, err = s.RoomEvents(ctx(), store.RoomEventsQuery{RoomID: "!old:y", Limit: 2, WithBackfilled: true, After: math.MinInt64, Before: math.MaxInt64})
	must(t, err)
	equal(t, "forwards", eventIDs(page), []string{create.EventID, cjoin.EventID})
	// Topological order: an event backfilled into a gap between timeline
	// events (depth 8, between the join at 7 and "after" at 9) is paged at
	// its depth, though its position is the lowest of all.
	joinPDU, err := s.GetPDUs(ctx(), []string{join.EventID})
	must(t, err)
	after := r.ev("m.room.message", nil, "@c:y", `{"body":"after"}`)
	after.Depth = join.Depth + 2
	_, _, err = s.PersistGraphEvent(ctx(), &store.GraphWrite{Event: after, StateBefore: joinPDU[0].StateGroup, Extremities: []string{after.EventID}})
	must(t, err)
	gap := r.ev("m.room.message", nil, "@c:y", `{"body":"gap"}`)
	gap.Depth = join.Depth + 1
	_, err = s.PersistBackfill(ctx(), "!old:y", []store.BackfillEvent{{Event: gap}})
	must(t, err)
	topo := store.RoomEventsQuery{RoomID: "!old:y", Backwards: true, Limit: 3, WithBackfilled: true, Topological: true, After: math.MinInt64, Before: math.MaxInt64}
	page, err = s.RoomEvents(ctx(), topo)
	must(t, err)
	equal(t, "topological, backwards", eventIDs(page), []string{after.EventID, gap.EventID, join.EventID})
	topo.BeforeTopo = &store.TopoPoint{Depth: join.Depth + 1, Pos: page[1].Pos}
	page, err = s.RoomEvents(ctx(), topo)
	must(t, err)
	equal(t, "topological, backwards from the gap", eventIDs(page)[:1], []string{join.EventID})
	topo.Backwards, topo.BeforeTopo, topo.AfterTopo = false, nil, &store.TopoPoint{Depth: join.Depth, Pos: joinPos}
	page, err = s.RoomEvents(ctx(), topo)
	must(t, err)
	equal(t, "topological, forwards from the join", eventIDs(page), []string{gap.EventID, after.EventID})

	// Clients' reads find backfilled events; the timeline without them
	// (/sync) does not.
	if _, err := s.GetEvent(ctx(), m1.EventID); err != nil {
		t.Fatalf("GetEvent of a backfilled event: %v", err)
	}
	tl, err := s.RoomEvents(ctx(), store.RoomEventsQuery{RoomID: "!old:y", Backwards: true, Limit: 10})
	must(t, err)
	equal(t, "timeline without backfilled events", eventIDs(tl), []string{after.EventID, join.EventID})
	// An outlier that joined the history is found by search at its new
	// position.
	if hits := search("forged"); len(hits) != 0 {
		t.Fatalf("search finds a rejected event: %+v", hits)
	}
	hits := search("phoenix")
	if len(hits) != 1 || hits[0].Event.EventID != phoenix.EventID || hits[0].Event.Pos != early[2].Pos {
		t.Fatalf("search after backfilling: %+v", hits)
	}
	mem, err := s.StateEventsOf(ctx(), "!old:y", "m.room.member", "@c:y")
	must(t, err)
	equal(t, "state events of a key", eventIDs(mem), []string{cjoin.EventID})
}

func pduIDs(pdus []store.PDU) []string {
	out := make([]string, len(pdus))
	for i, p := range pdus {
		out[i] = p.EventID
	}
	return out
}
