package storetest

import (
	"testing"

	"conclave/internal/store"
)

func testRoomsRead(t *testing.T, s store.Store) {
	r := newRoom(t, s, "!r:x", "@a:x")
	root, _ := r.msg(t, "@a:x", "root")
	rel := func(sender, relType, target, typ string) string {
		e := r.ev(typ, nil, sender, `{}`)
		e.RelatesTo, e.RelType = target, relType
		r.send(t, e)
		return e.EventID
	}
	t1 := rel("@b:x", "m.thread", root, "m.room.message")
	t2 := rel("@c:x", "m.thread", root, "m.room.message")
	edit1 := rel("@a:x", "m.replace", root, "m.room.message")
	edit2 := rel("@a:x", "m.replace", root, "m.room.message")
	rel("@b:x", "m.replace", root, "m.room.message") // another sender: not a valid edit
	ref1 := rel("@b:x", "m.reference", root, "m.room.message")
	ref2 := rel("@c:x", "m.reference", root, "m.room.message")
	ann := rel("@b:x", "m.annotation", root, "m.reaction")
	// A redacted relation is left out.
	gone := rel("@b:x", "m.thread", root, "m.room.message")
	red := r.ev("m.room.redaction", nil, "@b:x", `{}`)
	red.Redacts = gone
	r.send(t, red)

	all, err := s.Relations(ctx(), store.RelationsQuery{RoomID: "!r:x", EventID: root, Limit: 100})
	must(t, err)
	if len(all) != 8 || containsID(all, gone) {
		t.Fatalf("relations %v", eventIDs(all))
	}
	threads, _ := s.Relations(ctx(), store.RelationsQuery{RoomID: "!r:x", EventID: root, RelType: "m.thread", Backwards: true, Limit: 100})
	equal(t, "thread relations newest first", eventIDs(threads), []string{t2, t1})
	reactions, _ := s.Relations(ctx(), store.RelationsQuery{RoomID: "!r:x", EventID: root, EventType: "m.reaction", Limit: 100})
	equal(t, "by event type", eventIDs(reactions), []string{ann})
	first, _ := s.Relations(ctx(), store.RelationsQuery{RoomID: "!r:x", EventID: root, Limit: 1})
	page, _ := s.Relations(ctx(), store.RelationsQuery{RoomID: "!r:x", EventID: root, After: first[0].Pos, Limit: 1})
	equal(t, "page", eventIDs(page), []string{t2})
	other, _ := s.Relations(ctx(), store.RelationsQuery{RoomID: "!other:x", EventID: root, Limit: 10})
	equal(t, "other room", len(other), 0)

	b, err := s.BundledRelations(ctx(), []string{root, t1, "$unknown"}, "@b:x")
	must(t, err)
	th := b.Threads[root]
	if th.Count != 2 || th.LatestEventID != t2 || !th.Participated {
		t.Fatalf("thread summary %+v", th)
	}
	if b2, _ := s.BundledRelations(ctx(), []string{root}, "@z:x"); b2.Threads[root].Participated {
		t.Fatal("@z participated")
	}
	// edit1 and edit2 share a timestamp? no: later origin_server_ts wins.
	equal(t, "edit", b.Edits[root], edit2)
	_ = edit1
	equal(t, "references oldest first", b.References[root], []string{ref1, ref2})
	if len(b.Threads) != 1 || len(b.Edits) != 1 || len(b.References) != 1 {
		t.Fatalf("bundled for unrelated events: %+v", b)
	}

	acts, err := s.Threads(ctx(), store.ThreadsQuery{RoomID: "!r:x", Limit: 10})
	must(t, err)
	if len(acts) != 1 || acts[0].RootID != root {
		t.Fatalf("threads %+v", acts)
	}
	t2ev, _ := s.GetEvent(ctx(), t2)
	equal(t, "thread latest", acts[0].LatestPos, t2ev.Pos)
	acts, _ = s.Threads(ctx(), store.ThreadsQuery{RoomID: "!r:x", ParticipatedBy: "@c:x", Limit: 10})
	equal(t, "participated", len(acts), 1)
	acts, _ = s.Threads(ctx(), store.ThreadsQuery{RoomID: "!r:x", ParticipatedBy: "@z:x", Limit: 10})
	equal(t, "not participated", len(acts), 0)
	acts, _ = s.Threads(ctx(), store.ThreadsQuery{RoomID: "!r:x", Before: t2ev.Pos, Limit: 10})
	equal(t, "before latest", len(acts), 0)

	// Timestamps: r.ts rises by one per event.
	rootEv, _ := s.GetEvent(ctx(), root)
	evs, err := s.EventsNearTimestamp(ctx(), "!r:x", 0, false, 1)
	must(t, err)
	equal(t, "first event", evs[0].EventID, "$r:x-1")
	evs, _ = s.EventsNearTimestamp(ctx(), "!r:x", r.ts+100, true, 2)
	if len(evs) != 2 || evs[0].EventID != red.EventID {
		t.Fatalf("latest events %v", eventIDs(evs))
	}
	_ = rootEv
}
