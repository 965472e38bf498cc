package storetest

import (
	"fmt"
	"slices"
	"testing"

	"conclave/internal/store"
)

// graphRoom follows a room's state as a model while events are written
// through PersistGraphEvent.
type graphRoom struct {
	*room
	groups map[string]int64 // event ID → state group after it
}

func newGraphRoom(t *testing.T, s store.Store, id string) *graphRoom {
	r := newRoom(t, s, id, "@a:x")
	g := &graphRoom{room: r, groups: map[string]int64{}}
	pdus, err := s.GetPDUs(ctx(), r.head)
	must(t, err)
	if len(pdus) != 1 || pdus[0].StateGroup == 0 || pdus[0].Kind != store.KindTimeline {
		t.Fatalf("head of a new room: %+v", pdus)
	}
	g.groups[r.head[0]] = pdus[0].StateGroup
	return g
}

// stateOf reads a group as a map.
func stateOf(t *testing.T, s store.Store, group int64) map[string]string {
	t.Helper()
	entries, err := s.StateGroup(ctx(), group)
	must(t, err)
	m := make(map[string]string, len(entries))
	for _, e := range entries {
		k := e.Type + "|" + e.StateKey
		if _, dup := m[k]; dup {
			t.Fatalf("group %d holds %s twice", group, k)
		}
		m[k] = e.EventID
	}
	return m
}

func testGraphWrites(t *testing.T, s store.Store) {
	g := newGraphRoom(t, s, "!graph:x")
	base := g.head[0]
	baseGroup := g.groups[base]
	baseState := stateOf(t, s, baseGroup)

	// X extends the current state: a topic on one branch.
	x := g.ev("m.room.topic", sk(""), "@a:x", `{"topic":"x"}`)
	x.PrevEvents = []string{base}
	posX, groupX, err := s.PersistGraphEvent(ctx(), &store.GraphWrite{Event: x, StateBefore: baseGroup, Extremities: []string{x.EventID}, GapBefore: true})
	must(t, err)
	// X was taken after a hole in the history: a timeline gap at its position.
	for _, c := range []struct{ after, upto, want int64 }{{0, posX, posX}, {posX - 1, posX + 100, posX}, {posX, posX + 100, 0}, {0, posX - 1, 0}} {
		gap, err := s.LatestTimelineGap(ctx(), "!graph:x", c.after, c.upto)
		must(t, err)
		equal(t, fmt.Sprintf("gap in (%d, %d]", c.after, c.upto), gap, c.want)
	}
	gap, err := s.LatestTimelineGap(ctx(), "!other:x", 0, posX+100)
	must(t, err)
	equal(t, "gap of another room", gap, int64(0))
	if posX <= 0 || groupX == baseGroup {
		t.Fatalf("timeline state event: pos %d group %d (base %d)", posX, groupX, baseGroup)
	}
	want := clone(baseState)
	want["m.room.topic|"] = x.EventID
	equal(t, "state after X", stateOf(t, s, groupX), want)
	cur, err := s.RoomStateGroup(ctx(), "!graph:x")
	must(t, err)
	equal(t, "current group after X", cur, groupX)
	at, err := s.StateAt(ctx(), "!graph:x", posX)
	must(t, err)
	equal(t, "StateAt X", len(at), len(want))

	// Y forks from the base: the writer resolved the two extremities (say
	// the topic of Y wins and a member joined on Y's branch).
	y := g.ev("m.room.member", sk("@b:x"), "@b:x", `{"membership":"join"}`)
	y.Membership = "join"
	y.PrevEvents = []string{base}
	posY, groupY, err := s.PersistGraphEvent(ctx(), &store.GraphWrite{Event: y, StateBefore: baseGroup,
		Extremities: []string{x.EventID, y.EventID}, CurrentResolved: true,
		CurrentChanges: []store.StateEntry{{Type: "m.room.member", StateKey: "@b:x", EventID: y.EventID, Membership: "join"}}})
	must(t, err)
	wantY := clone(baseState)
	wantY["m.room.member|@b:x"] = y.EventID
	equal(t, "state after Y (its own branch)", stateOf(t, s, groupY), wantY)
	cur, err = s.RoomStateGroup(ctx(), "!graph:x")
	must(t, err)
	wantCur := clone(want)
	wantCur["m.room.member|@b:x"] = y.EventID
	equal(t, "current state after the fork", stateOf(t, s, cur), wantCur)
	// As of Y's position the room's state is the resolved one, not Y's
	// branch alone (what /sync reads).
	at, err = s.StateAt(ctx(), "!graph:x", posY)
	must(t, err)
	equal(t, "StateAt the fork", len(at), len(wantCur))
	for _, e := range at {
		if wantCur[e.Type+"|"+*e.StateKey] != e.EventID {
			t.Fatalf("StateAt the fork holds %s", e.EventID)
		}
	}
	snap, err := s.LoadRoomSnapshot(ctx(), "!graph:x")
	must(t, err)
	slices.Sort(snap.Extremities)
	exts := []string{x.EventID, y.EventID}
	slices.Sort(exts)
	equal(t, "extremities", snap.Extremities, exts)
	equal(t, "current state rows", len(snap.State), len(wantCur))
	mem, err := s.UserMemberships(ctx(), "@b:x")
	must(t, err)
	if len(mem) != 1 || mem[0].Membership != "join" || mem[0].Pos != posY {
		t.Fatalf("memberships of @b:x: %+v (pos %d)", mem, posY)
	}
	// JoinedCoMembers: the members joined to @b:x's rooms, each once, as
	// the room's member rows say.
	co, err := s.JoinedCoMembers(ctx(), "@b:x")
	must(t, err)
	members, err := s.RoomMembers(ctx(), "!graph:x")
	must(t, err)
	var joined []string
	for _, m := range members {
		if m.Membership == "join" {
			joined = append(joined, m.UserID)
		}
	}
	slices.Sort(co)
	slices.Sort(joined)
	equal(t, "co-members of @b:x", co, joined)
	if !slices.Contains(co, "@b:x") || len(joined) < 2 {
		t.Fatalf("co-members of @b:x: %v", co)
	}
	if none, err := s.JoinedCoMembers(ctx(), "@nobody:x"); err != nil || len(none) != 0 {
		t.Fatalf("co-members of a user in no room: %v, %v", none, err)
	}

	// M merges both: the state before it is new (X's state plus Y's member).
	m := g.ev("m.room.message", nil, "@b:x", `{"body":"merged"}`)
	m.PrevEvents = []string{x.EventID, y.EventID}
	posM, groupM, err := s.PersistGraphEvent(ctx(), &store.GraphWrite{Event: m, StateBefore: groupX, NewStateBefore: true,
		StateBeforeChanges: []store.StateEntry{{Type: "m.room.member", StateKey: "@b:x", EventID: y.EventID, Membership: "join"}},
		Extremities:        []string{m.EventID}, CurrentResolved: true})
	must(t, err)
	equal(t, "state after the merge", stateOf(t, s, groupM), wantCur)
	if posM <= posY {
		t.Fatalf("merge at %d after %d", posM, posY)
	}
	evs, err := s.RoomEvents(ctx(), store.RoomEventsQuery{RoomID: "!graph:x", Backwards: true, Limit: 3})
	must(t, err)
	equal(t, "timeline", eventIDs(evs), []string{m.EventID, y.EventID, x.EventID})

	// A soft-failed event: a negative position, its own state, out of the
	// timeline, the extremities and the current state.
	sf := g.ev("m.room.name", sk(""), "@c:x", `{"name":"sneaky"}`)
	sf.PrevEvents = []string{m.EventID}
	posSF, groupSF, err := s.PersistGraphEvent(ctx(), &store.GraphWrite{Event: sf, Kind: store.KindSoftFailed, StateBefore: groupM})
	must(t, err)
	if posSF >= 0 || groupSF == 0 {
		t.Fatalf("soft-failed: pos %d group %d", posSF, groupSF)
	}
	// A rejected one and outliers, likewise apart.
	rej := g.ev("m.room.power_levels", sk(""), "@c:x", `{}`)
	posR, _, err := s.PersistGraphEvent(ctx(), &store.GraphWrite{Event: rej, Kind: store.KindRejected, RejectedReason: "not allowed"})
	must(t, err)
	o1 := g.ev("m.room.member", sk("@o:y"), "@o:y", `{"membership":"join"}`)
	o2 := g.ev("m.room.create", sk(""), "@o:y", `{}`)
	must(t, s.PersistOutliers(ctx(), []store.NewEvent{o1, o2}))
	must(t, s.PersistOutliers(ctx(), []store.NewEvent{o1})) // again: nothing happens
	if posR >= 0 || posR == posSF {
		t.Fatalf("rejected at %d (soft-failed at %d)", posR, posSF)
	}
	pdus, err := s.GetPDUs(ctx(), []string{sf.EventID, rej.EventID, o1.EventID, o2.EventID, m.EventID, "$unknown"})
	must(t, err)
	kinds := map[string]store.PDU{}
	for _, p := range pdus {
		kinds[p.EventID] = p
	}
	if len(kinds) != 5 || kinds[sf.EventID].Kind != store.KindSoftFailed || kinds[rej.EventID].Kind != store.KindRejected ||
		kinds[rej.EventID].RejectedReason != "not allowed" || kinds[o1.EventID].Kind != store.KindOutlier ||
		kinds[o2.EventID].Kind != store.KindOutlier || kinds[m.EventID].StateGroup != groupM || kinds[o1.EventID].Pos >= 0 {
		t.Fatalf("GetPDUs: %+v", kinds)
	}
	for _, id := range []string{sf.EventID, rej.EventID, o1.EventID} {
		if _, err := s.GetEvent(ctx(), id); err == nil {
			t.Fatalf("clients' GetEvent found %s, which is not in the timeline", id)
		}
	}
	found, err := s.GetEvents(ctx(), []string{sf.EventID, o2.EventID, m.EventID})
	must(t, err)
	equal(t, "clients' GetEvents", eventIDs(found), []string{m.EventID})
	evs, err = s.RoomEvents(ctx(), store.RoomEventsQuery{RoomID: "!graph:x", Backwards: true, Limit: 100})
	must(t, err)
	for _, e := range evs {
		if e.Pos <= 0 {
			t.Fatalf("timeline holds %s at %d", e.EventID, e.Pos)
		}
	}
	snap, err = s.LoadRoomSnapshot(ctx(), "!graph:x")
	must(t, err)
	equal(t, "extremities after soft-fail", snap.Extremities, []string{m.EventID})
	if p := maxPos(t, s); p != posM {
		t.Fatalf("stream at %d after events clients never see (merge at %d)", p, posM)
	}

	// The same event again writes nothing.
	_, _, err = s.PersistGraphEvent(ctx(), &store.GraphWrite{Event: m, StateBefore: groupX, Extremities: []string{"$bogus"}})
	wantErr(t, err, store.ErrConflict)
	snap, err = s.LoadRoomSnapshot(ctx(), "!graph:x")
	must(t, err)
	equal(t, "extremities after a duplicate", snap.Extremities, []string{m.EventID})
}

// testGraphStateChains: long runs of state changes through graph writes, on
// two branches, cross the snapshot boundary; every group reads back as the
// model says.
func testGraphStateChains(t *testing.T, s store.Store) {
	g := newGraphRoom(t, s, "!chains:x")
	base := g.head[0]
	models := map[string]map[string]string{base: stateOf(t, s, g.groups[base])}
	heads := []string{base, base}
	for i := 0; i < 2*store.MaxStateGroupChain+30; i++ {
		b := i % 2
		prev := heads[b]
		e := g.ev("m.room.topic", sk(fmt.Sprint(i%7)), "@a:x", fmt.Sprintf(`{"topic":"%d"}`, i))
		if i%5 == 0 {
			e = g.ev("m.room.message", nil, "@a:x", `{"body":"m"}`)
		}
		e.PrevEvents = []string{prev}
		other := heads[1-b]
		w := &store.GraphWrite{Event: e, StateBefore: g.groups[prev], Extremities: []string{e.EventID, other}, CurrentResolved: true}
		model := clone(models[prev])
		if i%17 == 3 {
			// A state before that drops a key (state resolution v2.1 may).
			w.NewStateBefore = true
			w.StateBeforeChanges = []store.StateEntry{{Type: "m.room.topic", StateKey: "3"}}
			delete(model, "m.room.topic|3")
		}
		_, group, err := s.PersistGraphEvent(ctx(), w)
		must(t, err)
		if e.StateKey != nil {
			model[e.Type+"|"+*e.StateKey] = e.EventID
		}
		models[e.EventID] = model
		g.groups[e.EventID] = group
		heads[b] = e.EventID
	}
	for id, model := range models {
		equal(t, "state after "+id, stateOf(t, s, g.groups[id]), model)
	}
}

func clone(m map[string]string) map[string]string {
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// testGraphJoinedRoom: a room joined over federation starts with the join;
// its state before came from another server as outliers.
func testGraphJoinedRoom(t *testing.T, s store.Store) {
	_, err := s.CreateRoom(ctx(), &store.Room{RoomID: "!far:y", Version: "10", Creator: "@c:y", CreatedTS: 5}, nil)
	must(t, err)
	r := &room{s: s, id: "!far:y", ts: 1000}
	create := r.ev("m.room.create", sk(""), "@c:y", `{}`)
	cjoin := r.member("@c:y", "join")
	rules := r.ev("m.room.join_rules", sk(""), "@c:y", `{"join_rule":"public"}`)
	must(t, s.PersistOutliers(ctx(), []store.NewEvent{create, cjoin, rules}))
	state := []store.StateEntry{{Type: "m.room.create", EventID: create.EventID}, {Type: "m.room.member", StateKey: "@c:y", EventID: cjoin.EventID, Membership: "join"},
		{Type: "m.room.join_rules", EventID: rules.EventID}}
	join := r.member("@me:x", "join")
	join.PrevEvents = []string{rules.EventID}
	current := append(slices.Clone(state), store.StateEntry{Type: "m.room.member", StateKey: "@me:x", EventID: join.EventID, Membership: "join"})
	pos, group, err := s.PersistGraphEvent(ctx(), &store.GraphWrite{Event: join, NewStateBefore: true, StateBeforeChanges: state,
		Extremities: []string{join.EventID}, CurrentResolved: true, CurrentChanges: current})
	must(t, err)
	if pos <= 0 || group == 0 {
		t.Fatalf("join at %d, group %d", pos, group)
	}
	before, err := s.StateAt(ctx(), "!far:y", pos-1)
	must(t, err)
	equal(t, "state before the join", sortedIDs(before), sortedIDs2(state))
	after, err := s.StateAt(ctx(), "!far:y", pos)
	must(t, err)
	equal(t, "state after the join", sortedIDs(after), sortedIDs2(current))
	snap, err := s.LoadRoomSnapshot(ctx(), "!far:y")
	must(t, err)
	equal(t, "current state", sortedIDs(snap.State), sortedIDs2(current))
	for _, u := range []string{"@c:y", "@me:x"} {
		mem, err := s.UserMemberships(ctx(), u)
		must(t, err)
		if len(mem) != 1 || mem[0].Membership != "join" || mem[0].RoomID != "!far:y" {
			t.Fatalf("memberships of %s: %+v", u, mem)
		}
	}
	tl, err := s.RoomEvents(ctx(), store.RoomEventsQuery{RoomID: "!far:y", Limit: 10})
	must(t, err)
	equal(t, "timeline", eventIDs(tl), []string{join.EventID})
}

func sortedIDs2(entries []store.StateEntry) []string {
	var ids []string
	for _, e := range entries {
		ids = append(ids, e.EventID)
	}
	slices.Sort(ids)
	return ids
}

// testRemoteMemberships: an invite to a room this server is not in, then
// its rejection, each at a new stream position, with the stripped state.
func testRemoteMemberships(t *testing.T, s store.Store) {
	before := maxPos(t, s)
	inv := store.NewEvent{EventID: "$inv", RoomID: "!far:y", Type: "m.room.member", StateKey: sk("@me:x"), Sender: "@them:y", Membership: "invite", JSON: []byte(`{}`), Depth: 5}
	pos, err := s.PersistRemoteMembership(ctx(), &store.RemoteMembership{RoomID: "!far:y", UserID: "@me:x", RoomVersion: "10", Membership: "invite",
		Event: inv, StrippedState: []byte(`[{"type":"m.room.name"}]`)})
	must(t, err)
	if pos <= before || maxPos(t, s) != pos {
		t.Fatalf("invite at %d (before %d, now %d)", pos, before, maxPos(t, s))
	}
	mem, err := s.UserMemberships(ctx(), "@me:x")
	must(t, err)
	if len(mem) != 1 || mem[0].Membership != "invite" || mem[0].EventID != "$inv" || mem[0].Pos != pos {
		t.Fatalf("memberships %+v", mem)
	}
	got, err := s.GetRemoteMembership(ctx(), "!far:y", "@me:x")
	must(t, err)
	if got.RoomVersion != "10" || string(got.StrippedState) != `[{"type":"m.room.name"}]` || got.Event.EventID != "$inv" || got.Membership != "invite" {
		t.Fatalf("remote membership %+v", got)
	}
	pdus, err := s.GetPDUs(ctx(), []string{"$inv"})
	must(t, err)
	if len(pdus) != 1 || pdus[0].Kind != store.KindOutlier {
		t.Fatalf("invite event %+v", pdus)
	}
	leave := inv
	leave.EventID, leave.Sender, leave.Membership = "$leave", "@me:x", "leave"
	pos2, err := s.PersistRemoteMembership(ctx(), &store.RemoteMembership{RoomID: "!far:y", UserID: "@me:x", RoomVersion: "10", Membership: "leave", Event: leave, StrippedState: []byte(`[]`)})
	must(t, err)
	mem, err = s.UserMemberships(ctx(), "@me:x")
	must(t, err)
	if pos2 <= pos || len(mem) != 1 || mem[0].Membership != "leave" || mem[0].Pos != pos2 {
		t.Fatalf("after the rejection: %+v (pos %d)", mem, pos2)
	}
	_, err = s.GetRemoteMembership(ctx(), "!nope:y", "@me:x")
	wantErr(t, err, store.ErrNotFound)
}

// testGraphBatch: a run of events written in one PersistGraphEvents call,
// each one's state before being the state after an earlier one of the same
// call; a rejected one in the middle; and a call with an event already
// stored, which writes nothing at all.
func testGraphBatch(t *testing.T, s store.Store) {
	g := newGraphRoom(t, s, "!batch:x")
	base := g.head[0]
	baseState := stateOf(t, s, g.groups[base])
	m1 := g.ev("m.room.message", nil, "@a:x", `{"body":"1"}`)
	m1.PrevEvents = []string{base}
	topic := g.ev("m.room.topic", sk(""), "@a:x", `{"topic":"t"}`)
	topic.PrevEvents = []string{m1.EventID}
	rej := g.ev("m.room.power_levels", sk(""), "@c:x", `{}`)
	rej.PrevEvents = []string{topic.EventID}
	join := g.ev("m.room.member", sk("@b:x"), "@b:x", `{"membership":"join"}`)
	join.Membership = "join"
	join.PrevEvents = []string{topic.EventID}
	m2 := g.ev("m.room.message", nil, "@b:x", `{"body":"2"}`)
	m2.PrevEvents = []string{join.EventID}
	ws := []*store.GraphWrite{
		{Event: m1, StateBefore: g.groups[base], Extremities: []string{m1.EventID}},
		{Event: topic, StateBeforeOf: 1, Extremities: []string{topic.EventID}},
		{Event: rej, Kind: store.KindRejected, RejectedReason: "no"},
		{Event: join, StateBeforeOf: 2, Extremities: []string{join.EventID}},
		{Event: m2, StateBeforeOf: 4, Extremities: []string{m2.EventID}},
	}
	pos, groups, err := s.PersistGraphEvents(ctx(), ws)
	must(t, err)
	if len(pos) != 5 || len(groups) != 5 || pos[0] <= 0 || pos[1] <= pos[0] || pos[2] >= 0 || pos[3] <= pos[1] || pos[4] <= pos[3] {
		t.Fatalf("positions %v", pos)
	}
	if groups[0] != g.groups[base] || groups[1] == groups[0] || groups[2] != 0 || groups[3] == groups[1] || groups[4] != groups[3] {
		t.Fatalf("groups %v (base %d)", groups, g.groups[base])
	}
	want := clone(baseState)
	want["m.room.topic|"] = topic.EventID
	equal(t, "state after the topic", stateOf(t, s, groups[1]), want)
	want["m.room.member|@b:x"] = join.EventID
	equal(t, "state after the last", stateOf(t, s, groups[4]), want)
	cur, err := s.RoomStateGroup(ctx(), "!batch:x")
	must(t, err)
	equal(t, "current group", cur, groups[4])
	snap, err := s.LoadRoomSnapshot(ctx(), "!batch:x")
	must(t, err)
	equal(t, "extremities", snap.Extremities, []string{m2.EventID})
	equal(t, "current state rows", len(snap.State), len(want))
	mem, err := s.UserMemberships(ctx(), "@b:x")
	must(t, err)
	if len(mem) != 1 || mem[0].Membership != "join" || mem[0].Pos != pos[3] {
		t.Fatalf("memberships of @b:x: %+v", mem)
	}
	evs, err := s.RoomEvents(ctx(), store.RoomEventsQuery{RoomID: "!batch:x", Backwards: true, Limit: 4})
	must(t, err)
	equal(t, "timeline", eventIDs(evs), []string{m2.EventID, join.EventID, topic.EventID, m1.EventID})

	// All or nothing: the second write is an event already stored.
	m3 := g.ev("m.room.message", nil, "@b:x", `{"body":"3"}`)
	m3.PrevEvents = []string{m2.EventID}
	_, _, err = s.PersistGraphEvents(ctx(), []*store.GraphWrite{
		{Event: m3, StateBefore: groups[4], Extremities: []string{m3.EventID}},
		{Event: m2, StateBeforeOf: 1, Extremities: []string{m2.EventID}},
	})
	wantErr(t, err, store.ErrConflict)
	got, err := s.GetPDUs(ctx(), []string{m3.EventID})
	must(t, err)
	equal(t, "events of a failed call", len(got), 0)
	snap, err = s.LoadRoomSnapshot(ctx(), "!batch:x")
	must(t, err)
	equal(t, "extremities after a failed call", snap.Extremities, []string{m2.EventID})
	// A write naming no earlier write is refused.
	_, _, err = s.PersistGraphEvents(ctx(), []*store.GraphWrite{{Event: m3, StateBeforeOf: 1, Extremities: []string{m3.EventID}}})
	if err == nil {
		t.Fatal("a write whose state is its own was taken")
	}
}
