package room_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"conclave/internal/authrules"
	"conclave/internal/event"
	"conclave/internal/room"
	"conclave/internal/stateres"
	"conclave/internal/store"
	"conclave/internal/store/sqlite"
)

// remoteRoom drives a room on this server ("x.example") with events built
// and signed by another server ("y.example"), as federation would deliver
// them.
type remoteRoom struct {
	t      *testing.T
	svc    *room.Service
	db     store.Store
	id     string
	rv     *event.RoomVersion
	key    *event.SigningKey
	ts     int64
	mu     sync.Mutex
	notice []room.Notice
}

// equalStates resolves only states that agree (no conflicts): enough for
// forks whose branches changed no state; conflicting ones fail the test.
func equalStates(t *testing.T) room.StateResolver {
	return func(rv *event.RoomVersion, sets []room.StateMap, load room.EventLoader) (room.StateMap, error) {
		for _, s := range sets[1:] {
			if !maps.Equal(s, sets[0]) {
				t.Fatalf("conflicting states to resolve: %v / %v", sets[0], s)
			}
		}
		return sets[0], nil
	}
}

func newRemoteRoom(t *testing.T) *remoteRoom {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "receive.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	local, err := event.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	remote, err := event.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	r := &remoteRoom{t: t, db: db, key: remote, ts: 1_700_000_000_000}
	r.svc = room.New(db, "x.example", local)
	r.svc.ResolveState = equalStates(t)
	r.svc.Notify = func(n room.Notice) { r.mu.Lock(); r.notice = append(r.notice, n); r.mu.Unlock() }
	r.id, err = r.svc.CreateRoom(context.Background(), &room.CreateRequest{Creator: "@alice:x.example", Preset: "public_chat", RoomVersion: "10"})
	if err != nil {
		t.Fatal(err)
	}
	r.rv, _ = event.GetRoomVersion("10")
	return r
}

// state is the room's current state as the store has it.
func (r *remoteRoom) state() (map[authrules.StateKey]string, []string) {
	r.t.Helper()
	snap, err := r.db.LoadRoomSnapshot(context.Background(), r.id)
	if err != nil {
		r.t.Fatal(err)
	}
	st := map[authrules.StateKey]string{}
	for _, e := range snap.State {
		st[authrules.StateKey{Type: e.Type, StateKey: *e.StateKey}] = e.EventID
	}
	return st, snap.Extremities
}

// build makes a remote event with auth events chosen from state and the
// given prev events (nil: the room's forward extremities).
func (r *remoteRoom) build(typ string, stateKey *string, sender, content string, state map[authrules.StateKey]string, prev []string) *event.PDU {
	r.t.Helper()
	cur, exts := r.state()
	if state == nil {
		state = cur
	}
	if prev == nil {
		prev = exts
	}
	var auth []string
	for _, k := range authrules.Needed(r.rv, typ, stateKey, sender, json.RawMessage(content)) {
		if id, ok := state[k]; ok {
			auth = append(auth, id)
		}
	}
	pdus, err := r.db.GetPDUs(context.Background(), prev)
	if err != nil {
		r.t.Fatal(err)
	}
	var depth int64
	for _, p := range pdus {
		depth = max(depth, p.Depth)
	}
	r.ts++
	pdu, err := (&event.Proto{Type: typ, StateKey: stateKey, Sender: sender, RoomID: r.id, Content: json.RawMessage(content),
		PrevEvents: prev, AuthEvents: auth, Depth: depth + 1, OriginServerTS: r.ts}).Build(r.rv, "y.example", r.key)
	if err != nil {
		r.t.Fatal(err)
	}
	return pdu
}

func (r *remoteRoom) receive(pdu *event.PDU, want room.Outcome) room.Received {
	r.t.Helper()
	got, err := r.svc.Receive(context.Background(), pdu)
	if err != nil {
		r.t.Fatalf("receive %s: %v", pdu.Type, err)
	}
	if got.Outcome != want {
		r.t.Fatalf("receive %s %s: %v (%s), want %v", pdu.Type, pdu.EventID, got.Outcome, got.Reason, want)
	}
	return got
}

func (r *remoteRoom) timeline() []string {
	r.t.Helper()
	evs, err := r.db.RoomEvents(context.Background(), store.RoomEventsQuery{RoomID: r.id, Limit: 1000})
	if err != nil {
		r.t.Fatal(err)
	}
	var ids []string
	for _, e := range evs {
		ids = append(ids, e.EventID)
	}
	return ids
}

func sk(s string) *string { return &s }

func TestReceiveJoinAndMessages(t *testing.T) {
	r := newRemoteRoom(t)
	ctx := context.Background()
	join := r.build("m.room.member", sk("@bob:y.example"), "@bob:y.example", `{"membership":"join"}`, nil, nil)
	got := r.receive(join, room.Accepted)
	if got.Pos <= 0 {
		t.Fatalf("accepted at %d", got.Pos)
	}
	mem, err := r.db.UserMemberships(ctx, "@bob:y.example")
	if err != nil || len(mem) != 1 || mem[0].Membership != "join" {
		t.Fatalf("bob's memberships: %+v %v", mem, err)
	}
	r.mu.Lock()
	last := r.notice[len(r.notice)-1]
	r.mu.Unlock()
	if last.Pos != got.Pos || !slices.Contains(last.Users, "@alice:x.example") || !slices.Contains(last.Members, "@bob:y.example") {
		t.Fatalf("notice %+v", last)
	}
	hello := r.build("m.room.message", nil, "@bob:y.example", `{"msgtype":"m.text","body":"hello"}`, nil, nil)
	r.receive(hello, room.Accepted)
	r.receive(hello, room.AlreadyKnown)
	tl := r.timeline()
	if tl[len(tl)-1] != hello.EventID || tl[len(tl)-2] != join.EventID {
		t.Fatalf("timeline ends %v", tl[len(tl)-2:])
	}
	// A local message now cites the remote one.
	id, err := r.svc.Send(ctx, &room.SendRequest{RoomID: r.id, Sender: "@alice:x.example", Type: "m.room.message", Content: json.RawMessage(`{"body":"hi bob"}`)})
	if err != nil {
		t.Fatal(err)
	}
	pdus, _ := r.db.GetPDUs(ctx, []string{id})
	var p struct {
		Prev []string `json:"prev_events"`
	}
	json.Unmarshal(pdus[0].JSON, &p)
	if !slices.Equal(p.Prev, []string{hello.EventID}) {
		t.Fatalf("local event cites %v", p.Prev)
	}
}

func TestReceiveForkThenMerge(t *testing.T) {
	r := newRemoteRoom(t)
	ctx := context.Background()
	r.receive(r.build("m.room.member", sk("@bob:y.example"), "@bob:y.example", `{"membership":"join"}`, nil, nil), room.Accepted)
	b1 := r.build("m.room.message", nil, "@bob:y.example", `{"body":"b1"}`, nil, nil)
	r.receive(b1, room.Accepted)
	// Alice writes on top of b1 while bob, not having seen it, writes on b1 too.
	m1, err := r.svc.Send(ctx, &room.SendRequest{RoomID: r.id, Sender: "@alice:x.example", Type: "m.room.message", Content: json.RawMessage(`{"body":"m1"}`)})
	if err != nil {
		t.Fatal(err)
	}
	b2 := r.build("m.room.message", nil, "@bob:y.example", `{"body":"b2"}`, nil, []string{b1.EventID})
	r.receive(b2, room.Accepted)
	_, exts := r.state()
	slices.Sort(exts)
	want := []string{m1, b2.EventID}
	slices.Sort(want)
	if !slices.Equal(exts, want) {
		t.Fatalf("extremities %v, want %v", exts, want)
	}
	// The next local event merges both branches.
	m2, err := r.svc.Send(ctx, &room.SendRequest{RoomID: r.id, Sender: "@alice:x.example", Type: "m.room.message", Content: json.RawMessage(`{"body":"m2"}`)})
	if err != nil {
		t.Fatal(err)
	}
	pdus, _ := r.db.GetPDUs(ctx, []string{m2})
	var p struct {
		Prev []string `json:"prev_events"`
	}
	json.Unmarshal(pdus[0].JSON, &p)
	slices.Sort(p.Prev)
	if !slices.Equal(p.Prev, want) {
		t.Fatalf("merge cites %v, want %v", p.Prev, want)
	}
	if _, exts = r.state(); !slices.Equal(exts, []string{m2}) {
		t.Fatalf("extremities after the merge %v", exts)
	}
	// A remote event citing both branches merges them too.
	r2 := newRemoteRoom(t)
	r2.receive(r2.build("m.room.member", sk("@bob:y.example"), "@bob:y.example", `{"membership":"join"}`, nil, nil), room.Accepted)
	c1 := r2.build("m.room.message", nil, "@bob:y.example", `{"body":"c1"}`, nil, nil)
	r2.receive(c1, room.Accepted)
	l1, err := r2.svc.Send(ctx, &room.SendRequest{RoomID: r2.id, Sender: "@alice:x.example", Type: "m.room.message", Content: json.RawMessage(`{"body":"l1"}`)})
	if err != nil {
		t.Fatal(err)
	}
	c2 := r2.build("m.room.message", nil, "@bob:y.example", `{"body":"c2"}`, nil, []string{c1.EventID})
	r2.receive(c2, room.Accepted)
	c3 := r2.build("m.room.message", nil, "@bob:y.example", `{"body":"c3"}`, nil, []string{l1, c2.EventID})
	r2.receive(c3, room.Accepted)
	if _, exts = r2.state(); !slices.Equal(exts, []string{c3.EventID}) {
		t.Fatalf("extremities after a remote merge %v", exts)
	}
}

func TestReceiveRejectsAndSoftFails(t *testing.T) {
	r := newRemoteRoom(t)
	ctx := context.Background()
	// Eve never joined: her message fails against its own auth events.
	eve := r.build("m.room.message", nil, "@eve:y.example", `{"body":"let me in"}`, nil, nil)
	got := r.receive(eve, room.Rejected)
	if got.Reason == "" {
		t.Fatal("no reason for a rejection")
	}
	r.receive(eve, room.AlreadyKnown)
	if slices.Contains(r.timeline(), eve.EventID) {
		t.Fatal("a rejected event is in the timeline")
	}
	// An event whose auth events cite the rejected one is rejected too.
	st, _ := r.state()
	withBad := maps.Clone(st)
	withBad[authrules.StateKey{Type: "m.room.member", StateKey: "@eve:y.example"}] = eve.EventID
	r.receive(r.build("m.room.message", nil, "@eve:y.example", `{"body":"again"}`, withBad, nil), room.Rejected)

	// Bob joins; alice bans him; bob, who had not seen the ban, writes on
	// the branch before it: allowed there, not by the current state.
	join := r.build("m.room.member", sk("@bob:y.example"), "@bob:y.example", `{"membership":"join"}`, nil, nil)
	r.receive(join, room.Accepted)
	beforeBan, _ := r.state()
	if _, err := r.svc.SetMembership(ctx, &room.MembershipRequest{RoomID: r.id, Sender: "@alice:x.example", Target: "@bob:y.example", Membership: "ban"}); err != nil {
		t.Fatal(err)
	}
	late := r.build("m.room.message", nil, "@bob:y.example", `{"body":"late"}`, beforeBan, []string{join.EventID})
	got = r.receive(late, room.SoftFailed)
	_, exts := r.state()
	if slices.Contains(exts, late.EventID) || slices.Contains(r.timeline(), late.EventID) {
		t.Fatalf("soft-failed event in extremities %v or timeline", exts)
	}
	pdus, err := r.db.GetPDUs(ctx, []string{late.EventID, eve.EventID})
	if err != nil || len(pdus) != 2 {
		t.Fatalf("GetPDUs %v %v", pdus, err)
	}
	for _, p := range pdus {
		if (p.EventID == late.EventID && (p.Kind != store.KindSoftFailed || p.StateGroup == 0)) || (p.EventID == eve.EventID && p.Kind != store.KindRejected) {
			t.Fatalf("stored as %+v", p)
		}
	}

	// Unknown prev events: the caller must fetch them.
	ghost := r.build("m.room.message", nil, "@bob:y.example", `{"body":"never sent"}`, beforeBan, nil)
	orphan := r.build("m.room.message", nil, "@bob:y.example", `{"body":"?"}`, beforeBan, []string{ghost.EventID})
	_, err = r.svc.Receive(ctx, orphan)
	var missing *room.MissingEventsError
	if !errors.As(err, &missing) || !slices.Equal(missing.Events, []string{ghost.EventID}) {
		t.Fatalf("orphan: %v", err)
	}
}

// A topic set on each side of a fork: state resolution (v2: same mainline
// position, so the later origin_server_ts is applied last and wins) decides
// the current state, whichever order the events arrived in here.
func TestReceiveConflictResolves(t *testing.T) {
	for _, remoteLater := range []bool{false, true} {
		r := newRemoteRoom(t)
		r.svc.ResolveState = func(rv *event.RoomVersion, sets []room.StateMap, load room.EventLoader) (room.StateMap, error) {
			return stateres.Resolve(rv, sets, load)
		}
		ctx := context.Background()
		r.receive(r.build("m.room.member", sk("@bob:y.example"), "@bob:y.example", `{"membership":"join"}`, nil, nil), room.Accepted)
		pl, err := r.svc.PowerLevels(ctx, r.id)
		if err != nil {
			t.Fatal(err)
		}
		users := pl.Users()
		users["@bob:y.example"] = 50
		content, _ := json.Marshal(map[string]any{"users": users, "state_default": 50, "events_default": 0, "ban": 50, "kick": 50, "redact": 50, "invite": 0})
		p1, err := r.svc.Send(ctx, &room.SendRequest{RoomID: r.id, Sender: "@alice:x.example", Type: "m.room.power_levels", StateKey: sk(""), Content: content})
		if err != nil {
			t.Fatal(err)
		}
		atP1, _ := r.state()
		local, err := r.svc.Send(ctx, &room.SendRequest{RoomID: r.id, Sender: "@alice:x.example", Type: "m.room.topic", StateKey: sk(""), Content: json.RawMessage(`{"topic":"local"}`)})
		if err != nil {
			t.Fatal(err)
		}
		if remoteLater {
			r.ts = 4_000_000_000_000
		}
		remote := r.build("m.room.topic", sk(""), "@bob:y.example", `{"topic":"remote"}`, atP1, []string{p1})
		r.receive(remote, room.Accepted)
		want := local
		if remoteLater {
			want = remote.EventID
		}
		st, exts := r.state()
		if got := st[authrules.StateKey{Type: "m.room.topic"}]; got != want || len(exts) != 2 {
			t.Fatalf("remote later %v: topic %s, want %s; extremities %v", remoteLater, got, want, exts)
		}
		// The writer's own state agrees with the store: the next local event
		// is authorised and built on it.
		if _, err := r.svc.Send(ctx, &room.SendRequest{RoomID: r.id, Sender: "@alice:x.example", Type: "m.room.message", Content: json.RawMessage(`{"body":"after"}`)}); err != nil {
			t.Fatal(err)
		}
		after, err := r.db.StateAt(ctx, r.id, 1<<40)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range after {
			if e.Type == "m.room.topic" && e.EventID != want {
				t.Fatalf("state after the merge has topic %s, want %s", e.EventID, want)
			}
		}
	}
}

// A room forked many times (a hostile server can) is merged a few forward
// extremities at a time: a local event cites at most 10.
func TestManyExtremitiesMergedTenAtATime(t *testing.T) {
	r := newRemoteRoom(t)
	ctx := context.Background()
	r.receive(r.build("m.room.member", sk("@bob:y.example"), "@bob:y.example", `{"membership":"join"}`, nil, nil), room.Accepted)
	base := r.build("m.room.message", nil, "@bob:y.example", `{"body":"base"}`, nil, nil)
	r.receive(base, room.Accepted)
	for i := 0; i < 15; i++ {
		r.receive(r.build("m.room.message", nil, "@bob:y.example", fmt.Sprintf(`{"body":"fork %d"}`, i), nil, []string{base.EventID}), room.Accepted)
	}
	if _, exts := r.state(); len(exts) != 15 {
		t.Fatalf("%d extremities after 15 forks", len(exts))
	}
	send := func() []string {
		id, err := r.svc.Send(ctx, &room.SendRequest{RoomID: r.id, Sender: "@alice:x.example", Type: "m.room.message", Content: json.RawMessage(`{"body":"merge"}`)})
		if err != nil {
			t.Fatal(err)
		}
		pdus, _ := r.db.GetPDUs(ctx, []string{id})
		var p struct {
			Prev []string `json:"prev_events"`
		}
		json.Unmarshal(pdus[0].JSON, &p)
		return p.Prev
	}
	if prev := send(); len(prev) != 10 {
		t.Fatalf("first merge cites %d", len(prev))
	}
	if _, exts := r.state(); len(exts) != 6 {
		t.Fatalf("%d extremities after the first merge, want 6", len(exts))
	}
	if prev := send(); len(prev) != 6 {
		t.Fatalf("second merge cites %d", len(prev))
	}
	if _, exts := r.state(); len(exts) != 1 {
		t.Fatalf("%d extremities after the second merge", len(exts))
	}
}

// A membership received on a branch (a join racing other events) changes
// the current state through resolution: its own membership is known though
// it is not stored yet.
func TestReceiveJoinOnABranch(t *testing.T) {
	r := newRemoteRoom(t)
	r.svc.ResolveState = func(rv *event.RoomVersion, sets []room.StateMap, load room.EventLoader) (room.StateMap, error) {
		return stateres.Resolve(rv, sets, load)
	}
	ctx := context.Background()
	join := r.build("m.room.member", sk("@bob:y.example"), "@bob:y.example", `{"membership":"join"}`, nil, nil)
	r.receive(join, room.Accepted)
	atJoin, _ := r.state()
	if _, err := r.svc.Send(ctx, &room.SendRequest{RoomID: r.id, Sender: "@alice:x.example", Type: "m.room.message", Content: json.RawMessage(`{"body":"meanwhile"}`)}); err != nil {
		t.Fatal(err)
	}
	carol := r.build("m.room.member", sk("@carol:y.example"), "@carol:y.example", `{"membership":"join"}`, atJoin, []string{join.EventID})
	r.receive(carol, room.Accepted)
	mem, err := r.db.UserMemberships(ctx, "@carol:y.example")
	if err != nil || len(mem) != 1 || mem[0].Membership != "join" {
		t.Fatalf("carol's memberships: %+v %v", mem, err)
	}
}
