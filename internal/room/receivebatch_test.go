package room_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync/atomic"
	"testing"

	"conclave/internal/authrules"
	"conclave/internal/event"
	"conclave/internal/room"
	"conclave/internal/store"
)

// chain builds remote events on explicit prev events (not stored yet).
func (r *remoteRoom) chain(typ string, stateKey *string, sender, content string, state map[authrules.StateKey]string, prev []string, depth int64) *event.PDU {
	r.t.Helper()
	var auth []string
	for _, k := range authrules.Needed(r.rv, typ, stateKey, sender, json.RawMessage(content)) {
		if id, ok := state[k]; ok {
			auth = append(auth, id)
		}
	}
	r.ts++
	pdu, err := (&event.Proto{Type: typ, StateKey: stateKey, Sender: sender, RoomID: r.id, Content: json.RawMessage(content),
		PrevEvents: prev, AuthEvents: auth, Depth: depth, OriginServerTS: r.ts}).Build(r.rv, "y.example", r.key)
	if err != nil {
		r.t.Fatal(err)
	}
	return pdu
}

// A transaction's events taken together answer what each would have been
// answered one after the other: rejected ones in the middle do not fail the
// others, a fork and a merge go through the graph path, and the batch stops
// at an event citing events this server lacks.
func TestReceiveBatch(t *testing.T) {
	r := newRemoteRoom(t)
	ctx := context.Background()
	join := r.build("m.room.member", sk("@bob:y.example"), "@bob:y.example", `{"membership":"join"}`, nil, nil)
	r.receive(join, room.Accepted)
	st, exts := r.state()
	pdus, _ := r.db.GetPDUs(ctx, exts)
	d := pdus[0].Depth
	m1 := r.chain("m.room.message", nil, "@bob:y.example", `{"body":"m1"}`, st, exts, d+1)
	eve := r.chain("m.room.message", nil, "@eve:y.example", `{"body":"let me in"}`, st, []string{m1.EventID}, d+2)
	name := r.chain("m.room.member", sk("@bob:y.example"), "@bob:y.example", `{"membership":"join","displayname":"Bob"}`, st, []string{m1.EventID}, d+2)
	st2 := maps2(st, authrules.StateKey{Type: "m.room.member", StateKey: "@bob:y.example"}, name.EventID)
	topic := r.chain("m.room.topic", sk(""), "@bob:y.example", `{"topic":"mine"}`, st2, []string{name.EventID}, d+3)
	m2 := r.chain("m.room.message", nil, "@bob:y.example", `{"body":"m2"}`, st2, []string{name.EventID}, d+3)
	m3 := r.chain("m.room.message", nil, "@bob:y.example", `{"body":"m3 (a fork)"}`, st2, []string{name.EventID}, d+3)
	m4 := r.chain("m.room.message", nil, "@bob:y.example", `{"body":"m4 (the merge)"}`, st2, []string{m2.EventID, m3.EventID}, d+4)
	m5 := r.chain("m.room.message", nil, "@bob:y.example", `{"body":"m5"}`, st2, []string{m4.EventID}, d+5)
	ghost := r.chain("m.room.message", nil, "@bob:y.example", `{"body":"never sent"}`, st2, []string{m5.EventID}, d+6)
	orphan := r.chain("m.room.message", nil, "@bob:y.example", `{"body":"orphan"}`, st2, []string{ghost.EventID}, d+7)
	m6 := r.chain("m.room.message", nil, "@bob:y.example", `{"body":"m6"}`, st2, []string{m5.EventID}, d+6)

	batch := []*event.PDU{m1, eve, name, m1, topic, m2, m3, m4, m5, orphan, m6}
	want := []room.Outcome{room.Accepted, room.Rejected, room.Accepted, room.AlreadyKnown, room.Rejected, room.Accepted, room.Accepted, room.Accepted, room.Accepted}
	res := r.svc.ReceiveBatch(ctx, "y.example", batch)
	if len(res) != 10 {
		t.Fatalf("%d results, want 10 (up to the orphan)", len(res))
	}
	for i, w := range want {
		if res[i].Err != nil || res[i].Outcome != w {
			t.Fatalf("event %d: %v (%s) %v, want %v", i, res[i].Outcome, res[i].Reason, res[i].Err, w)
		}
		if (w == room.Accepted) != (res[i].Pos > 0) {
			t.Fatalf("event %d at position %d", i, res[i].Pos)
		}
	}
	var missing *room.MissingEventsError
	if !errors.As(res[9].Err, &missing) || !slices.Equal(missing.Events, []string{ghost.EventID}) {
		t.Fatalf("orphan: %v", res[9].Err)
	}
	tl := r.timeline()
	if got := tl[len(tl)-6:]; !slices.Equal(got, []string{m1.EventID, name.EventID, m2.EventID, m3.EventID, m4.EventID, m5.EventID}) {
		t.Fatalf("timeline ends %v", got)
	}
	cur, exts := r.state()
	if !slices.Equal(exts, []string{m5.EventID}) || cur[authrules.StateKey{Type: "m.room.member", StateKey: "@bob:y.example"}] != name.EventID {
		t.Fatalf("extremities %v, bob's member event %s", exts, cur[authrules.StateKey{Type: "m.room.member", StateKey: "@bob:y.example"}])
	}
	stored, _ := r.db.GetPDUs(ctx, []string{eve.EventID, topic.EventID, m2.EventID, name.EventID})
	for _, p := range stored {
		rejected := p.EventID == eve.EventID || p.EventID == topic.EventID
		if rejected != (p.Kind == store.KindRejected) || (!rejected && p.StateGroup == 0) {
			t.Fatalf("%s stored as %+v", p.EventID, p)
		}
	}
	r.mu.Lock()
	last := r.notice[len(r.notice)-1]
	r.mu.Unlock()
	if last.Pos != res[8].Pos {
		t.Fatalf("last notice at %d, m5 at %d", last.Pos, res[8].Pos)
	}
	// The rest goes on from where it stopped; the in-memory state the batch
	// built is the one the writer goes on with.
	res = r.svc.ReceiveBatch(ctx, "y.example", []*event.PDU{m6})
	if len(res) != 1 || res[0].Err != nil || res[0].Outcome != room.Accepted {
		t.Fatalf("m6: %+v", res)
	}
	id, err := r.svc.Send(ctx, &room.SendRequest{RoomID: r.id, Sender: "@alice:x.example", Type: "m.room.message", Content: json.RawMessage(`{"body":"hi"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if _, exts := r.state(); !slices.Equal(exts, []string{id}) {
		t.Fatalf("extremities after a local send %v", exts)
	}
}

func maps2(m map[authrules.StateKey]string, k authrules.StateKey, v string) map[authrules.StateKey]string {
	c := make(map[authrules.StateKey]string, len(m)+1)
	for x, y := range m {
		c[x] = y
	}
	c[k] = v
	return c
}

// Complement's TestCorruptedAuthChain, at the writer: the state at a missing
// prev event names bob's member events A…E, each authorised by the one
// before; B could not be fetched. C, D and E (and the prev event citing E)
// cannot be checked and are not kept; the event whose auth events include E
// is rejected, and bob's member event in the room's state stays his join.
func TestReceiveWithStateBrokenAuthChain(t *testing.T) {
	r := newRemoteRoom(t)
	ctx := context.Background()
	join := r.build("m.room.member", sk("@bob:y.example"), "@bob:y.example", `{"membership":"join"}`, nil, nil)
	r.receive(join, room.Accepted)
	st, exts := r.state()
	bobKey := authrules.StateKey{Type: "m.room.member", StateKey: "@bob:y.example"}
	prev, state := exts, st
	var chain []*event.PDU
	for i, name := range []string{"A", "B", "C", "D", "E"} {
		ev := r.chain("m.room.member", sk("@bob:y.example"), "@bob:y.example", `{"membership":"join","displayname":"`+name+`"}`, state, prev, int64(10+i))
		chain = append(chain, ev)
		prev, state = []string{ev.EventID}, maps2(state, bobKey, ev.EventID)
	}
	p := r.chain("m.room.message", nil, "@bob:y.example", `{"body":"for /state_ids"}`, state, prev, 20)
	g := r.chain("m.room.message", nil, "@bob:y.example", `{"body":"for /get_missing_events"}`, state, []string{p.EventID}, 21)
	var before []string
	for _, id := range state {
		before = append(before, id)
	}
	fetched := []*event.PDU{chain[0], chain[2], chain[3], chain[4], p} // not B
	got, err := r.svc.ReceiveWithState(ctx, g, []room.MissingPrev{{EventID: p.EventID, StateBefore: before}}, fetched)
	if err != nil {
		t.Fatal(err)
	}
	if got.Outcome != room.Rejected {
		t.Fatalf("the event citing E: %v (%s)", got.Outcome, got.Reason)
	}
	cur, _ := r.state()
	if cur[bobKey] != join.EventID {
		t.Fatalf("bob's member event in the state is %s, not his join", cur[bobKey])
	}
	stored, _ := r.db.GetPDUs(ctx, []string{chain[0].EventID, chain[2].EventID, chain[3].EventID, chain[4].EventID, p.EventID})
	for _, s := range stored {
		if s.EventID != chain[0].EventID {
			t.Fatalf("%s was kept (kind %d) though its auth chain is broken", s.EventID, s.Kind)
		}
	}
}

// failingWrites fails the next PersistGraphEvents call once.
type failingWrites struct {
	store.Store
	fail atomic.Bool
}

func (f *failingWrites) PersistGraphEvents(ctx context.Context, ws []*store.GraphWrite) ([]int64, []int64, error) {
	if f.fail.CompareAndSwap(true, false) {
		return nil, nil, errors.New("disk full")
	}
	return f.Store.PersistGraphEvents(ctx, ws)
}

// When the batch's one write fails, nothing of it was written: the writer
// reads the room again and takes the events one by one, with the same
// answers.
func TestReceiveBatchWriteFailsThenOneByOne(t *testing.T) {
	r := newRemoteRoom(t)
	ctx := context.Background()
	r.receive(r.build("m.room.member", sk("@bob:y.example"), "@bob:y.example", `{"membership":"join"}`, nil, nil), room.Accepted)
	st, exts := r.state()
	pdus, _ := r.db.GetPDUs(ctx, exts)
	d := pdus[0].Depth
	m1 := r.chain("m.room.message", nil, "@bob:y.example", `{"body":"m1"}`, st, exts, d+1)
	eve := r.chain("m.room.message", nil, "@eve:y.example", `{"body":"let me in"}`, st, []string{m1.EventID}, d+2)
	m2 := r.chain("m.room.message", nil, "@bob:y.example", `{"body":"m2"}`, st, []string{m1.EventID}, d+2)

	fw := &failingWrites{Store: r.db}
	key, _ := event.GenerateSigningKey()
	svc := room.New(fw, "x.example", key)
	svc.ResolveState = equalStates(t)
	fw.fail.Store(true)
	res := svc.ReceiveBatch(ctx, "y.example", []*event.PDU{m1, eve, m2})
	if fw.fail.Load() {
		t.Fatal("the batch was not written in one call")
	}
	want := []room.Outcome{room.Accepted, room.Rejected, room.Accepted}
	if len(res) != 3 {
		t.Fatalf("results %+v", res)
	}
	for i, w := range want {
		if res[i].Err != nil || res[i].Outcome != w || (w == room.Accepted) != (res[i].Pos > 0) {
			t.Fatalf("event %d: %+v, want %v", i, res[i], w)
		}
	}
	if _, exts := r.state(); !slices.Equal(exts, []string{m2.EventID}) {
		t.Fatalf("extremities %v", exts)
	}
}

// An event whose prev event was rejected is taken with the state before the
// rejected one (which changed nothing), in a batch as alone; it merges the
// extremity the rejected event was built on.
func TestReceiveAfterRejectedPrevEvent(t *testing.T) {
	r := newRemoteRoom(t)
	ctx := context.Background()
	r.receive(r.build("m.room.member", sk("@bob:y.example"), "@bob:y.example", `{"membership":"join"}`, nil, nil), room.Accepted)
	st, exts := r.state()
	pdus, _ := r.db.GetPDUs(ctx, exts)
	d := pdus[0].Depth
	// Power levels bob may not send: rejected.
	pl := r.chain("m.room.power_levels", sk(""), "@bob:y.example", `{"users":{"@bob:y.example":100}}`, st, exts, d+1)
	after := r.chain("m.room.message", nil, "@bob:y.example", `{"body":"after a rejected one"}`, st, []string{pl.EventID}, d+2)
	next := r.chain("m.room.message", nil, "@bob:y.example", `{"body":"next"}`, st, []string{after.EventID}, d+3)
	res := r.svc.ReceiveBatch(ctx, "y.example", []*event.PDU{pl, after, next})
	want := []room.Outcome{room.Rejected, room.Accepted, room.Accepted}
	for i, w := range want {
		if res[i].Err != nil || res[i].Outcome != w {
			t.Fatalf("event %d: %+v, want %v", i, res[i], w)
		}
	}
	cur, exts2 := r.state()
	if !slices.Equal(exts2, []string{next.EventID}) || cur[authrules.StateKey{Type: "m.room.power_levels"}] != st[authrules.StateKey{Type: "m.room.power_levels"}] {
		t.Fatalf("extremities %v, power levels %s", exts2, cur[authrules.StateKey{Type: "m.room.power_levels"}])
	}
}
