package room_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"

	"conclave/internal/event"
	"conclave/internal/matrix"
	"conclave/internal/room"
	"conclave/internal/stateres"
	"conclave/internal/store"
	"conclave/internal/store/sqlite"
)

// server is one homeserver's room service and store, for tests that pass
// events between two of them by hand, as federation would.
type server struct {
	name string
	svc  *room.Service
	db   store.Store
	key  *event.SigningKey
}

func newServer(t *testing.T, name string) *server {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), name+".db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	key, err := event.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	svc := room.New(db, name, key)
	svc.ResolveState = func(rv *event.RoomVersion, sets []room.StateMap, load room.EventLoader) (room.StateMap, error) {
		return stateres.Resolve(rv, sets, load)
	}
	return &server{name: name, svc: svc, db: db, key: key}
}

// signTemplate is the joining server's part of make_join: fill in and sign
// the template.
func (s *server) signTemplate(t *testing.T, rvID string, tmpl json.RawMessage) *event.PDU {
	t.Helper()
	var p struct {
		Type       string          `json:"type"`
		StateKey   string          `json:"state_key"`
		Sender     string          `json:"sender"`
		RoomID     string          `json:"room_id"`
		Content    json.RawMessage `json:"content"`
		Prev       []string        `json:"prev_events"`
		Auth       []string        `json:"auth_events"`
		Depth      int64           `json:"depth"`
		OriginTS   int64           `json:"origin_server_ts"`
		OriginName string          `json:"origin"`
	}
	if err := json.Unmarshal(tmpl, &p); err != nil {
		t.Fatal(err)
	}
	rv, _ := event.GetRoomVersion(rvID)
	pdu, err := (&event.Proto{Type: p.Type, StateKey: &p.StateKey, Sender: p.Sender, RoomID: p.RoomID, Content: p.Content,
		PrevEvents: p.Prev, AuthEvents: p.Auth, Depth: p.Depth, OriginServerTS: p.OriginTS}).Build(rv, s.name, s.key)
	if err != nil {
		t.Fatal(err)
	}
	return pdu
}

// joinThrough joins user (of s) to roomID through resident, as make_join
// and send_join v2 would, and imports the answer.
func (s *server) joinThrough(t *testing.T, resident *server, roomID, user string, tamper func(state, chain []*event.PDU) ([]*event.PDU, []*event.PDU)) (*event.PDU, error) {
	t.Helper()
	ctx := context.Background()
	rvID, tmpl, err := resident.svc.MembershipTemplate(ctx, roomID, user, "join", []string{"10", "11"})
	if err != nil {
		t.Fatal(err)
	}
	pdu := s.signTemplate(t, rvID, tmpl)
	stored, err := resident.svc.AcceptMembership(ctx, s.name, roomID, pdu.EventID, "join", pdu)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := resident.svc.StateBefore(ctx, roomID, pdu.EventID)
	if err != nil {
		t.Fatal(err)
	}
	var stateIDs []string
	for _, id := range ids {
		stateIDs = append(stateIDs, id)
	}
	state, err := resident.svc.Events(ctx, roomID, stateIDs)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := resident.svc.AuthChain(ctx, stored.Version, append(slices.Clone(stateIDs), stored.AuthEvents...))
	if err != nil {
		t.Fatal(err)
	}
	if tamper != nil {
		state, chain = tamper(state, chain)
	}
	return stored, s.svc.ImportJoin(ctx, stored.Version, stored, state, chain)
}

func timelineOf(t *testing.T, db store.Store, roomID string) []string {
	t.Helper()
	evs, err := db.RoomEvents(context.Background(), store.RoomEventsQuery{RoomID: roomID, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range evs {
		ids = append(ids, e.EventID)
	}
	return ids
}

// relay hands an event built on one server to another, as /send would.
func relay(t *testing.T, from, to *server, id string) room.Received {
	t.Helper()
	ctx := context.Background()
	pdus, err := from.db.GetPDUs(ctx, []string{id})
	if err != nil || len(pdus) != 1 {
		t.Fatalf("event %s: %v %v", id, pdus, err)
	}
	r, err := from.db.GetRoom(ctx, pdus[0].RoomID)
	if err != nil {
		t.Fatal(err)
	}
	rv, _ := event.GetRoomVersion(r.Version)
	pdu, err := event.ParsePDU(rv, pdus[0].JSON)
	if err != nil {
		t.Fatal(err)
	}
	got, err := to.svc.Receive(ctx, pdu)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestJoinThroughAnotherServer(t *testing.T) {
	ctx := context.Background()
	x, y := newServer(t, "x.example"), newServer(t, "y.example")
	roomID, err := y.svc.CreateRoom(ctx, &room.CreateRequest{Creator: "@alice:y.example", Preset: "public_chat", RoomVersion: "10"})
	if err != nil {
		t.Fatal(err)
	}
	topic := "across"
	if _, err := y.svc.Send(ctx, &room.SendRequest{RoomID: roomID, Sender: "@alice:y.example", Type: "m.room.topic", StateKey: new(string), Content: json.RawMessage(`{"topic":"` + topic + `"}`)}); err != nil {
		t.Fatal(err)
	}
	join, err := x.joinThrough(t, y, roomID, "@bob:x.example", nil)
	if err != nil {
		t.Fatal(err)
	}
	// x now has the room: its state (the resident's, plus the join) and a
	// timeline that starts with the join.
	snapX, err := x.db.LoadRoomSnapshot(ctx, roomID)
	if err != nil {
		t.Fatal(err)
	}
	snapY, err := y.db.LoadRoomSnapshot(ctx, roomID)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := stateIDs(snapX.State), stateIDs(snapY.State); !slices.Equal(got, want) {
		t.Fatalf("state on x %v, on y %v", got, want)
	}
	if tl := timelineOf(t, x.db, roomID); !slices.Equal(tl, []string{join.EventID}) {
		t.Fatalf("x's timeline %v", tl)
	}
	mem, err := x.db.UserMemberships(ctx, "@bob:x.example")
	if err != nil || len(mem) != 1 || mem[0].Membership != "join" {
		t.Fatalf("bob's memberships on x: %+v %v", mem, err)
	}
	// Messages both ways.
	fromBob, err := x.svc.Send(ctx, &room.SendRequest{RoomID: roomID, Sender: "@bob:x.example", Type: "m.room.message", Content: json.RawMessage(`{"body":"hi from x"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if got := relay(t, x, y, fromBob); got.Outcome != room.Accepted {
		t.Fatalf("bob's message on y: %v %s", got.Outcome, got.Reason)
	}
	fromAlice, err := y.svc.Send(ctx, &room.SendRequest{RoomID: roomID, Sender: "@alice:y.example", Type: "m.room.message", Content: json.RawMessage(`{"body":"hi from y"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if got := relay(t, y, x, fromAlice); got.Outcome != room.Accepted {
		t.Fatalf("alice's message on x: %v %s", got.Outcome, got.Reason)
	}
	if tl := timelineOf(t, x.db, roomID); !slices.Equal(tl, []string{join.EventID, fromBob, fromAlice}) {
		t.Fatalf("x's timeline %v", tl)
	}
	// Bob leaves from x: y accepts it.
	leave, err := x.svc.SetMembership(ctx, &room.MembershipRequest{RoomID: roomID, Sender: "@bob:x.example", Target: "@bob:x.example", Membership: "leave"})
	if err != nil {
		t.Fatal(err)
	}
	if got := relay(t, x, y, leave); got.Outcome != room.Accepted {
		t.Fatalf("bob's leave on y: %v %s", got.Outcome, got.Reason)
	}
}

// The auth chain of a room's state is every event the state's events cite
// as auth events, recursively: the create event, the power levels and the
// creator's join are in it though they are in the state too (send_join's
// and /state's auth_chain; Dendrite refuses a join answer without the
// create event in auth_chain). Each event is there once; events no state
// event cites (the topic; the join rules, as only alice has joined) are not.
func TestAuthChainOfStateHoldsItsAuthEvents(t *testing.T) {
	ctx := context.Background()
	y := newServer(t, "y.example")
	roomID, err := y.svc.CreateRoom(ctx, &room.CreateRequest{Creator: "@alice:y.example", Preset: "public_chat", RoomVersion: "10"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := y.svc.Send(ctx, &room.SendRequest{RoomID: roomID, Sender: "@alice:y.example", Type: "m.room.topic", StateKey: new(string), Content: json.RawMessage(`{"topic":"t"}`)}); err != nil {
		t.Fatal(err)
	}
	snap, err := y.db.LoadRoomSnapshot(ctx, roomID)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	byType := map[string]string{}
	for _, e := range snap.State {
		ids = append(ids, e.EventID)
		byType[e.Type] = e.EventID
	}
	rv, _ := event.GetRoomVersion("10")
	chain, err := y.svc.AuthChain(ctx, rv, ids)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, e := range chain {
		got[e.EventID]++
	}
	for _, typ := range []string{"m.room.create", "m.room.power_levels", "m.room.member"} {
		if got[byType[typ]] != 1 {
			t.Errorf("%s (%s) is in the chain %d times, want once", typ, byType[typ], got[byType[typ]])
		}
	}
	for _, typ := range []string{"m.room.topic", "m.room.join_rules"} {
		if got[byType[typ]] != 0 {
			t.Errorf("%s, which nothing cites, is in the chain", typ)
		}
	}
	// One event's chain: its auth events, recursively, never itself.
	msg, err := y.svc.Send(ctx, &room.SendRequest{RoomID: roomID, Sender: "@alice:y.example", Type: "m.room.message", Content: json.RawMessage(`{"body":"x"}`)})
	if err != nil {
		t.Fatal(err)
	}
	chain, err = y.svc.AuthChain(ctx, rv, []string{msg})
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range chain {
		types = append(types, e.Type)
	}
	slices.Sort(types)
	if want := []string{"m.room.create", "m.room.member", "m.room.power_levels"}; !slices.Equal(types, want) {
		t.Fatalf("a message's auth chain: %v, want %v", types, want)
	}
}

func TestJoinAnswerChecked(t *testing.T) {
	ctx := context.Background()
	x, y := newServer(t, "x.example"), newServer(t, "y.example")
	roomID, err := y.svc.CreateRoom(ctx, &room.CreateRequest{Creator: "@alice:y.example", Preset: "public_chat", RoomVersion: "10"})
	if err != nil {
		t.Fatal(err)
	}
	// An answer without the create event cannot be trusted.
	_, err = x.joinThrough(t, y, roomID, "@bob:x.example", func(state, chain []*event.PDU) ([]*event.PDU, []*event.PDU) {
		drop := func(l []*event.PDU) []*event.PDU {
			return slices.DeleteFunc(l, func(e *event.PDU) bool { return e.Type == "m.room.create" })
		}
		return drop(state), drop(chain)
	})
	if me, ok := matrix.AsError(err); !ok || me.Code != matrix.ErrForbidden {
		t.Fatalf("answer without create: %v", err)
	}
	if _, err := x.db.GetRoom(ctx, roomID); err == nil {
		t.Fatal("a refused join answer left a room behind")
	}

	// An event whose auth events are missing from the answer is left out;
	// the join goes ahead.
	roomID2, err := y.svc.CreateRoom(ctx, &room.CreateRequest{Creator: "@alice:y.example", Preset: "public_chat", RoomVersion: "10"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = x.joinThrough(t, y, roomID2, "@carol:x.example", func(state, chain []*event.PDU) ([]*event.PDU, []*event.PDU) {
		fake := *state[0]
		fake.AuthEvents = []string{"$not-in-the-answer"}
		fake.EventID = "$fake"
		fake.Type = "m.room.name"
		name := ""
		fake.StateKey = &name
		return append(state, &fake), chain
	})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := x.db.LoadRoomSnapshot(ctx, roomID2)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range snap.State {
		if e.EventID == "$fake" {
			t.Fatal("an unverifiable state event was kept")
		}
	}

	// send_join with something other than a join is refused.
	rvID, tmpl, err := y.svc.MembershipTemplate(ctx, roomID, "@dave:x.example", "join", nil)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	json.Unmarshal(tmpl, &m)
	m["content"] = json.RawMessage(`{"membership":"leave"}`)
	tmpl, _ = json.Marshal(m)
	leave := x.signTemplate(t, rvID, tmpl)
	_, err = y.svc.AcceptMembership(ctx, "x.example", roomID, leave.EventID, "join", leave)
	if me, ok := matrix.AsError(err); !ok || me.Status != 400 {
		t.Fatalf("send_join of a leave: %v", err)
	}
	// A user of another server than the one asking.
	_, tmpl, _ = y.svc.MembershipTemplate(ctx, roomID, "@eve:x.example", "join", nil)
	eve := x.signTemplate(t, rvID, tmpl)
	_, err = y.svc.AcceptMembership(ctx, "z.example", roomID, eve.EventID, "join", eve)
	if me, ok := matrix.AsError(err); !ok || me.Code != matrix.ErrForbidden {
		t.Fatalf("send_join from another server: %v", err)
	}
	// A version the joining server does not support.
	_, _, err = y.svc.MembershipTemplate(ctx, roomID, "@dave:x.example", "join", []string{"9"})
	if me, ok := matrix.AsError(err); !ok || me.Code != matrix.ErrIncompatibleRoomVer || me.Extra["room_version"] != "10" {
		t.Fatalf("incompatible version: %v", err)
	}
	// A banned user gets no template.
	if _, err := y.svc.SetMembership(ctx, &room.MembershipRequest{RoomID: roomID, Sender: "@alice:y.example", Target: "@mallory:x.example", Membership: "ban"}); err != nil {
		t.Fatal(err)
	}
	_, _, err = y.svc.MembershipTemplate(ctx, roomID, "@mallory:x.example", "join", nil)
	if me, ok := matrix.AsError(err); !ok || me.Code != matrix.ErrForbidden {
		t.Fatalf("make_join of a banned user: %v", err)
	}
}

func stateIDs(evs []store.StoredEvent) []string {
	var ids []string
	for _, e := range evs {
		ids = append(ids, e.EventID)
	}
	slices.Sort(ids)
	return ids
}

// The servers a local event goes to: an invitee's server, which had the
// invite through /invite, is not sent it again (Synapse sends an event to
// the servers joined before it; Dendrite, sent the invite in a transaction
// while its user joins, lost the room); a kicked user's server is (the
// rescinded invite must reach it).
func TestOutgoingServersOfMembershipChanges(t *testing.T) {
	ctx := context.Background()
	y := newServer(t, "y.example")
	sent := map[string][]string{} // membership → servers
	y.svc.Outgoing = func(_ string, pdus []*event.PDU, servers []string) {
		for _, p := range pdus {
			var c struct{ Membership string }
			json.Unmarshal(p.Content, &c)
			sent[c.Membership] = servers
		}
	}
	roomID, err := y.svc.CreateRoom(ctx, &room.CreateRequest{Creator: "@alice:y.example", Preset: "private_chat", RoomVersion: "10"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := y.svc.SetMembership(ctx, &room.MembershipRequest{RoomID: roomID, Sender: "@alice:y.example", Target: "@bob:x.example", Membership: "invite"}); err != nil {
		t.Fatal(err)
	}
	if s, ok := sent["invite"]; ok {
		t.Fatalf("the invite was sent to %v", s)
	}
	if _, err := y.svc.SetMembership(ctx, &room.MembershipRequest{RoomID: roomID, Sender: "@alice:y.example", Target: "@bob:x.example", Membership: "leave"}); err != nil {
		t.Fatal(err)
	}
	if s := sent["leave"]; !slices.Equal(s, []string{"x.example"}) {
		t.Fatalf("the rescinded invite was sent to %v, want x.example", s)
	}
}
