package storetest

import (
	"context"
	"testing"

	"conclave/internal/store"
)

// testWritesOutliveTheirCaller: the writes whose outcome the caller applies
// to its caches (room events, graph events, a transaction's answer) are
// carried through even when the caller's context has already ended. A
// backend that gave up instead could also give up after its commit had
// reached the database, and report a committed write as failed; a context
// cancelled before the call is the interleaving's deterministic edge.
func testWritesOutliveTheirCaller(t *testing.T, s store.Store) {
	gone, cancel := context.WithCancel(ctx())
	cancel()

	r := newRoom(t, s, "!gone:x", "@a:x")
	msg := r.ev("m.room.message", nil, "@a:x", `{"body":"sent by a client that hung up"}`)
	pos, err := s.PersistEvents(gone, r.id, []store.NewEvent{msg})
	must(t, err)
	if len(pos) != 1 || pos[0] != maxPos(t, s) {
		t.Fatalf("positions %v, max %d", pos, maxPos(t, s))
	}
	snap, err := s.LoadRoomSnapshot(ctx(), r.id)
	must(t, err)
	equal(t, "extremities", snap.Extremities, []string{msg.EventID})

	g := newGraphRoom(t, s, "!gonegraph:x")
	x := g.ev("m.room.topic", sk(""), "@a:x", `{"topic":"x"}`)
	x.PrevEvents = []string{g.head[0]}
	xpos, _, err := s.PersistGraphEvent(gone, &store.GraphWrite{Event: x, StateBefore: g.groups[g.head[0]], Extremities: []string{x.EventID}})
	must(t, err)
	pdus, err := s.GetPDUs(ctx(), []string{x.EventID})
	must(t, err)
	if len(pdus) != 1 || xpos <= 0 {
		t.Fatalf("graph event at %d, stored %d", xpos, len(pdus))
	}
	y := g.ev("m.room.topic", sk(""), "@a:x", `{"topic":"y"}`)
	y.PrevEvents = []string{x.EventID}
	_, _, err = s.PersistGraphEvents(gone, []*store.GraphWrite{{Event: y, StateBefore: pdus[0].StateGroup, Extremities: []string{y.EventID}}})
	must(t, err)
	pdus, err = s.GetPDUs(ctx(), []string{y.EventID})
	must(t, err)
	equal(t, "graph batch stored", len(pdus), 1)

	must(t, s.FedTxnRecord(gone, "gone.example", "t1", []byte(`{"pdus":{}}`), 1000))
	answer, err := s.FedTxnAnswer(ctx(), "gone.example", "t1")
	must(t, err)
	equal(t, "answer", string(answer), `{"pdus":{}}`)
}
