package storetest

import (
	"errors"
	"math"
	"testing"

	"conclave/internal/store"
)

// testRetention: the events message retention may purge (non-state
// timeline and backfilled events sent before a time, never a forward
// extremity), and the purge: the row stays with the JSON given (the graph:
// GetPDUs, state as of its position), everything clients read of it goes
// (event reads, timelines, search, relations, notifications).
func testRetention(t *testing.T, s store.Store) {
	r := newRoom(t, s, "!ret:x", "@a:x")
	other := newRoom(t, s, "!aaa:x", "@a:x") // no policy
	other.msg(t, "@a:x", "kept")
	policy := r.ev("m.room.retention", sk(""), "@a:x", `{"max_lifetime":1000}`)
	r.send(t, r.member("@b:x", "join"), policy)
	m1 := r.ev("m.room.message", nil, "@b:x", `{"msgtype":"m.text","body":"phoenix one"}`)
	m1.Push = []store.PushAction{{UserID: "@a:x", ThreadID: "main", Actions: []byte(`["notify"]`)}}
	p1 := r.send(t, m1)[0]
	m2 := r.ev("m.room.message", nil, "@a:x", `{"msgtype":"m.text","body":"phoenix two","m.relates_to":{"rel_type":"m.thread","event_id":"`+m1.EventID+`"}}`)
	m2.RelatesTo, m2.RelType = m1.EventID, "m.thread"
	m2.SenderDevice, m2.TxnID = "DEV", "txn1"
	p2 := r.send(t, m2)[0]
	topic := r.ev("m.room.topic", sk(""), "@a:x", `{"topic":"phoenix topic"}`)
	r.send(t, topic)
	// A soft-failed and a rejected message beside the timeline: the first
	// is purged like a timeline event, the second stays as it is (rejected
	// events are never used nor served).
	group, err := s.RoomStateGroup(ctx(), "!ret:x")
	must(t, err)
	sf := r.ev("m.room.message", nil, "@b:x", `{"msgtype":"m.text","body":"phoenix soft"}`)
	_, _, err = s.PersistGraphEvent(ctx(), &store.GraphWrite{Event: sf, Kind: store.KindSoftFailed, StateBefore: group})
	must(t, err)
	rej := r.ev("m.room.message", nil, "@b:x", `{"msgtype":"m.text","body":"phoenix rejected"}`)
	_, _, err = s.PersistGraphEvent(ctx(), &store.GraphWrite{Event: rej, Kind: store.KindRejected, RejectedReason: "no"})
	must(t, err)
	m3 := r.ev("m.room.message", nil, "@b:x", `{"msgtype":"m.text","body":"phoenix three"}`)
	p3 := r.send(t, m3)[0]
	stateAtM2, err := s.StateAt(ctx(), "!ret:x", p2)
	must(t, err)

	rooms, err := s.RetentionRooms(ctx(), "", 10)
	must(t, err)
	if len(rooms) != 2 || rooms[0].RoomID != "!aaa:x" || rooms[0].Policy != nil || rooms[1].RoomID != "!ret:x" || string(rooms[1].Policy) != string(policy.JSON) {
		t.Fatalf("retention rooms: %+v", rooms)
	}
	rooms, err = s.RetentionRooms(ctx(), "!aaa:x", 10)
	must(t, err)
	if len(rooms) != 1 || rooms[0].RoomID != "!ret:x" {
		t.Fatalf("retention rooms after !aaa:x: %+v", rooms)
	}

	// Everything is old enough: state events and the extremity stay out.
	expired := func(afterTS, afterPos int64, limit int) []string {
		t.Helper()
		evs, err := s.ExpiredEvents(ctx(), "!ret:x", m3.OriginServerTS+10, afterTS, afterPos, limit)
		must(t, err)
		var ids []string
		for _, e := range evs {
			ids = append(ids, e.EventID)
		}
		return ids
	}
	equal(t, "expired", expired(math.MinInt64, 0, 10), []string{m1.EventID, m2.EventID, sf.EventID})
	equal(t, "page 2", expired(m1.OriginServerTS, p1, 10), []string{m2.EventID, sf.EventID})
	evs, err := s.ExpiredEvents(ctx(), "!ret:x", m2.OriginServerTS, math.MinInt64, 0, 10)
	must(t, err)
	if len(evs) != 1 || evs[0].EventID != m1.EventID || evs[0].Pos != p1 || evs[0].TS != m1.OriginServerTS || string(evs[0].JSON) != string(m1.JSON) {
		t.Fatalf("expired before m2: %+v", evs)
	}

	red := func(e store.NewEvent) store.PurgedEvent {
		return store.PurgedEvent{EventID: e.EventID, JSON: []byte(`{"type":"` + e.Type + `","content":{}}`)}
	}
	n, err := s.PurgeEvents(ctx(), "!ret:x", []store.PurgedEvent{red(m1), red(m2), red(topic), red(m3), red(policy), red(sf), red(rej)})
	must(t, err)
	equal(t, "purged", n, 3)

	// Gone for clients.
	for _, id := range []string{m1.EventID, m2.EventID} {
		if _, err := s.GetEvent(ctx(), id); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("GetEvent of a purged event: %v", err)
		}
	}
	if _, err := s.GetEvent(ctx(), m3.EventID); err != nil {
		t.Fatalf("the extremity: %v", err)
	}
	tl, err := s.RoomEvents(ctx(), store.RoomEventsQuery{RoomID: "!ret:x", Limit: 50})
	must(t, err)
	if containsID(tl, m1.EventID) || containsID(tl, m2.EventID) || !containsID(tl, topic.EventID) || !containsID(tl, m3.EventID) {
		t.Fatalf("timeline after purge: %v", eventIDs(tl))
	}
	tl, err = s.RoomEvents(ctx(), store.RoomEventsQuery{RoomID: "!ret:x", Limit: 50, WithBackfilled: true, Topological: true,
		Backwards: true, After: math.MinInt64, Before: math.MaxInt64})
	must(t, err)
	if containsID(tl, m1.EventID) || containsID(tl, m2.EventID) {
		t.Fatalf("/messages after purge: %v", eventIDs(tl))
	}
	hits, _, err := s.SearchEvents(ctx(), &store.SearchQuery{Terms: []string{"phoenix"}, RoomIDs: []string{"!ret:x"}, Recent: true, Limit: 10})
	must(t, err)
	var found []string
	for _, h := range hits {
		found = append(found, h.Event.EventID)
	}
	equal(t, "search after purge", sorted(found), sorted([]string{topic.EventID, m3.EventID}))
	rel, err := s.Relations(ctx(), store.RelationsQuery{RoomID: "!ret:x", EventID: m1.EventID, Limit: 10})
	must(t, err)
	equal(t, "relations after purge", len(rel), 0)
	u, err := s.UnreadCounts(ctx(), "!ret:x", "@a:x", 0, maxPos(t, s))
	must(t, err)
	if n, _ := u.Total(); n != 0 {
		t.Fatalf("notifications of purged events still counted: %+v", u)
	}
	ns, err := s.NotificationsOf(ctx(), "@a:x", 0, 10, false)
	must(t, err)
	equal(t, "notifications after purge", len(ns), 0)

	// Kept for the graph: the row, the JSON given, the state as of it.
	pdus, err := s.GetPDUs(ctx(), []string{m1.EventID, m2.EventID, m3.EventID, sf.EventID, rej.EventID})
	must(t, err)
	kinds := map[string]int{}
	for _, p := range pdus {
		kinds[p.EventID] = p.Kind
		if p.Kind == store.KindPurged && (string(p.JSON) != string(red(m1).JSON) || p.StateGroup == 0) {
			t.Fatalf("purged row: %+v", p)
		}
	}
	equal(t, "kinds", kinds, map[string]int{m1.EventID: store.KindPurged, m2.EventID: store.KindPurged, m3.EventID: store.KindTimeline,
		sf.EventID: store.KindPurged, rej.EventID: store.KindRejected})
	after, err := s.StateAt(ctx(), "!ret:x", p2)
	must(t, err)
	equal(t, "state as of a purged event", sortedIDs(after), sortedIDs(stateAtM2))

	// Nothing left to purge; purging again changes nothing.
	equal(t, "expired after purge", len(expired(math.MinInt64, 0, 10)), 0)
	n, err = s.PurgeEvents(ctx(), "!ret:x", []store.PurgedEvent{red(m1)})
	must(t, err)
	equal(t, "purged again", n, 0)

	// A new event after the purge: the old extremity may go now.
	m4, _ := r.msg(t, "@a:x", "four")
	equal(t, "expired after a new event", expired(math.MinInt64, 0, 10), []string{m3.EventID})
	if _, err := s.GetEvent(ctx(), m4); err != nil {
		t.Fatal(err)
	}
	_ = p3
}
