package storetest

import (
	"fmt"
	"sync"
	"testing"

	"conclave/internal/store"
)

func fedPDU(id string, dests ...string) store.FedEnqueue {
	return store.FedEnqueue{Destinations: dests, Item: store.FedItem{EventID: id, JSON: []byte(`{"event":"` + id + `"}`)}}
}

func fedEDU(typ, content, key string, keep bool, dests ...string) store.FedEnqueue {
	return store.FedEnqueue{Destinations: dests, Item: store.FedItem{EDUType: typ, JSON: []byte(content), CoalesceKey: key, Keep: keep}}
}

// fedNames lists a batch's event IDs and EDU contents in order.
func fedNames(b *store.FedBatch) (pdus, edus []string) {
	for _, e := range b.PDUs {
		pdus = append(pdus, e.EventID)
	}
	for _, e := range b.EDUs {
		edus = append(edus, e.EDUType+" "+string(e.JSON))
	}
	return
}

func fedIDs(es []store.FedEntry) []int64 {
	var ids []int64
	for _, e := range es {
		ids = append(ids, e.ID)
	}
	return ids
}

func testFedQueue(t *testing.T, s store.Store) {
	c := ctx()
	// One call, several items, each fanned out; a destination listed twice
	// gets the item once.
	must(t, s.FedEnqueue(c, []store.FedEnqueue{
		fedPDU("$1", "a.test", "b.test", "c.test", "a.test"),
		fedEDU("m.typing", `{"n":1}`, "typing !r", false, "a.test", "b.test"),
		fedPDU("$2", "a.test", "b.test"),
		fedEDU("m.direct_to_device", `{"n":2}`, "", true, "a.test"),
	}))
	ds, err := s.FedDestinations(c)
	must(t, err)
	equal(t, "destinations", ds, []store.FedDestination{{Destination: "a.test"}, {Destination: "b.test"}, {Destination: "c.test"}})

	b, err := s.FedNextBatch(c, "a.test", 50, 100)
	must(t, err)
	p, e := fedNames(b)
	equal(t, "a PDUs", p, []string{"$1", "$2"})
	equal(t, "a EDUs", e, []string{`m.typing {"n":1}`, `m.direct_to_device {"n":2}`})
	if b.TxnID != "" || string(b.PDUs[0].JSON) != `{"event":"$1"}` || b.PDUs[0].EDUType != "" || b.EDUs[0].EventID != "" {
		t.Fatalf("batch %+v", b)
	}
	// Limits take the head of each queue.
	b1, err := s.FedNextBatch(c, "a.test", 1, 1)
	must(t, err)
	p, e = fedNames(b1)
	equal(t, "a head", [][]string{p, e}, [][]string{{"$1"}, {`m.typing {"n":1}`}})

	// A newer typing EDU for the room replaces the queued one, to the
	// destinations it goes to; to-device messages are never replaced.
	must(t, s.FedEnqueue(c, []store.FedEnqueue{
		fedEDU("m.typing", `{"n":3}`, "typing !r", false, "a.test"),
		fedEDU("m.direct_to_device", `{"n":4}`, "", true, "a.test"),
	}))
	b, err = s.FedNextBatch(c, "a.test", 50, 100)
	must(t, err)
	_, e = fedNames(b)
	equal(t, "a EDUs after coalescing", e, []string{`m.direct_to_device {"n":2}`, `m.typing {"n":3}`, `m.direct_to_device {"n":4}`})
	bb, err := s.FedNextBatch(c, "b.test", 50, 100)
	must(t, err)
	_, e = fedNames(bb)
	equal(t, "b EDUs", e, []string{`m.typing {"n":1}`})

	// A failed attempt: its items become the pending transaction. Items
	// queued after it do not join it on the retry.
	must(t, s.FedFailed(c, "a.test", "txn-1", fedIDs(b.PDUs[:1]), fedIDs(b.EDUs[:2]), 3, 12345))
	must(t, s.FedEnqueue(c, []store.FedEnqueue{fedPDU("$0", "a.test")}))
	ds, err = s.FedDestinations(c)
	must(t, err)
	equal(t, "a state", ds[0], store.FedDestination{Destination: "a.test", RetryCount: 3, NextAttemptTS: 12345})
	r, err := s.FedNextBatch(c, "a.test", 50, 100)
	must(t, err)
	p, e = fedNames(r)
	if r.TxnID != "txn-1" {
		t.Fatalf("retry txn %q", r.TxnID)
	}
	equal(t, "retry", [][]string{p, e}, [][]string{{"$1"}, {`m.direct_to_device {"n":2}`, `m.typing {"n":3}`}})
	// A coalesced EDU leaves the pending transaction: the retry carries
	// less, never something the receiver may have seen under another ID.
	must(t, s.FedEnqueue(c, []store.FedEnqueue{fedEDU("m.typing", `{"n":5}`, "typing !r", false, "a.test")}))
	r, err = s.FedNextBatch(c, "a.test", 50, 100)
	must(t, err)
	p, e = fedNames(r)
	equal(t, "retry after coalescing", [][]string{p, e}, [][]string{{"$1"}, {`m.direct_to_device {"n":2}`}})
	must(t, s.FedResetBackoff(c, "a.test"))
	ds, err = s.FedDestinations(c)
	must(t, err)
	equal(t, "a state after reset", ds[0], store.FedDestination{Destination: "a.test"})
	r, err = s.FedNextBatch(c, "a.test", 50, 100)
	must(t, err)
	if r.TxnID != "txn-1" {
		t.Fatalf("reset back-off dropped the pending transaction: %q", r.TxnID)
	}
	must(t, s.FedDelivered(c, []store.FedDone{{Destination: "a.test", PDUs: fedIDs(r.PDUs), EDUs: fedIDs(r.EDUs)}}, 777))
	// The to-device payload went to a.test only: collected; $1 is still
	// queued for b.test and c.test.
	n, err := s.FedCollect(c, append(fedIDs(r.PDUs), fedIDs(r.EDUs)...))
	must(t, err)
	if n != 1 {
		t.Fatalf("collected %d payloads, want 1", n)
	}
	b, err = s.FedNextBatch(c, "a.test", 50, 100)
	must(t, err)
	p, e = fedNames(b)
	if b.TxnID != "" {
		t.Fatalf("delivered transaction still pending: %q", b.TxnID)
	}
	equal(t, "a after delivery", [][]string{p, e}, [][]string{{"$2", "$0"}, {`m.direct_to_device {"n":4}`, `m.typing {"n":5}`}})
	ds, err = s.FedDestinations(c)
	must(t, err)
	equal(t, "a state after delivery", ds[0], store.FedDestination{Destination: "a.test", LastSuccessTS: 777})
	// Delivering again what is gone changes nothing.
	must(t, s.FedDelivered(c, []store.FedDone{{Destination: "a.test", PDUs: fedIDs(r.PDUs), EDUs: fedIDs(r.EDUs)}}, 778))
	// Other destinations still have the shared payloads.
	bc, err := s.FedNextBatch(c, "c.test", 50, 100)
	must(t, err)
	if len(bc.PDUs) != 1 || string(bc.PDUs[0].JSON) != `{"event":"$1"}` {
		t.Fatalf("c.test batch %+v", bc)
	}
	for _, d := range []string{"a.test", "b.test", "c.test"} {
		for {
			b, err := s.FedNextBatch(c, d, 1, 1)
			must(t, err)
			if b.Empty() {
				break
			}
			must(t, s.FedDelivered(c, []store.FedDone{{Destination: d, PDUs: fedIDs(b.PDUs), EDUs: fedIDs(b.EDUs)}}, 1))
		}
	}
	ds, err = s.FedDestinations(c)
	must(t, err)
	equal(t, "destinations when all is delivered", ds, []store.FedDestination{})
	// Left: $1, $2, $0, the first typing EDU (b.test had it), the second
	// to-device message and the last typing EDU. The typing EDU a newer
	// one replaced at its only destination went at once.
	n, err = s.FedCollect(c, nil)
	must(t, err)
	if n != 6 {
		t.Fatalf("collected %d payloads, want 6", n)
	}
	n, err = s.FedCollect(c, nil)
	must(t, err)
	if n != 0 {
		t.Fatalf("collected %d payloads again", n)
	}
}

func testFedQueueAtomic(t *testing.T, s store.Store) {
	c := ctx()
	bad := store.FedEnqueue{Destinations: []string{"a.test"}, Item: store.FedItem{EventID: "$x", EDUType: "m.typing", JSON: []byte(`{}`)}}
	if err := s.FedEnqueue(c, []store.FedEnqueue{fedPDU("$1", "a.test", "b.test"), bad}); err == nil {
		t.Fatal("an item that is both a PDU and an EDU was accepted")
	}
	ds, err := s.FedDestinations(c)
	must(t, err)
	equal(t, "destinations after a failed enqueue", ds, []store.FedDestination{})
}

func testFedQueuePrune(t *testing.T, s store.Store) {
	c := ctx()
	var items []store.FedEnqueue
	for i := range 3 {
		items = append(items, fedPDU(fmt.Sprintf("$%d", i), "a.test"))
	}
	for i := range 5 {
		items = append(items, fedEDU("m.receipt", fmt.Sprintf(`{"r":%d}`, i), "", false, "a.test", "b.test"))
		if i%2 == 0 {
			items = append(items, fedEDU("m.direct_to_device", fmt.Sprintf(`{"d":%d}`, i), "", true, "a.test"))
		}
	}
	must(t, s.FedEnqueue(c, items)) // a: 3 PDUs, 5 receipts, 3 to-device = 11
	n, err := s.FedPrune(c, "a.test", 11)
	must(t, err)
	if n != 0 {
		t.Fatalf("pruned %d at the cap", n)
	}
	n, err = s.FedPrune(c, "a.test", 7)
	must(t, err)
	if n != 4 {
		t.Fatalf("pruned %d, want 4", n)
	}
	b, err := s.FedNextBatch(c, "a.test", 50, 100)
	must(t, err)
	p, e := fedNames(b)
	equal(t, "after pruning", [][]string{p, e}, [][]string{{"$0", "$1", "$2"},
		{`m.direct_to_device {"d":0}`, `m.direct_to_device {"d":2}`, `m.receipt {"r":4}`, `m.direct_to_device {"d":4}`}})
	// Only PDUs and to-device left: nothing more may go.
	n, err = s.FedPrune(c, "a.test", 1)
	must(t, err)
	if n != 1 {
		t.Fatalf("pruned %d, want 1", n)
	}
	b, err = s.FedNextBatch(c, "a.test", 50, 100)
	must(t, err)
	if len(b.PDUs) != 3 || len(b.EDUs) != 3 {
		t.Fatalf("pruning took PDUs or to-device messages: %+v", b)
	}
	// b.test keeps every receipt.
	bb, err := s.FedNextBatch(c, "b.test", 50, 100)
	must(t, err)
	if len(bb.EDUs) != 5 {
		t.Fatalf("b.test has %d EDUs, want 5", len(bb.EDUs))
	}
	// Two destinations' transactions acknowledged in one call.
	must(t, s.FedDelivered(c, []store.FedDone{
		{Destination: "a.test", PDUs: fedIDs(b.PDUs[:2]), EDUs: fedIDs(b.EDUs[:1])},
		{Destination: "b.test", EDUs: fedIDs(bb.EDUs[:4])},
	}, 5))
	b, err = s.FedNextBatch(c, "a.test", 50, 100)
	must(t, err)
	bb, err = s.FedNextBatch(c, "b.test", 50, 100)
	must(t, err)
	if len(b.PDUs) != 1 || len(b.EDUs) != 2 || len(bb.EDUs) != 1 {
		t.Fatalf("after delivering both: a.test %d PDUs %d EDUs, b.test %d EDUs; want 1, 2, 1", len(b.PDUs), len(b.EDUs), len(bb.EDUs))
	}
	ds, err := s.FedDestinations(c)
	must(t, err)
	equal(t, "states", ds, []store.FedDestination{{Destination: "a.test", LastSuccessTS: 5}, {Destination: "b.test", LastSuccessTS: 5}})
}

// testFedQueueConcurrent: destinations delivered concurrently while items
// are queued for all of them: each arrives once, in order, and collecting
// after each delivery leaves no payload behind (the last destination to
// deliver one deletes it, whoever that was).
func testFedQueueConcurrent(t *testing.T, s store.Store) {
	c := ctx()
	dests := []string{"a.test", "b.test", "c.test", "d.test"}
	const n = 40
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range n {
			must(t, s.FedEnqueue(c, []store.FedEnqueue{
				fedPDU(fmt.Sprintf("$%03d", i), dests...),
				fedEDU("m.direct_to_device", fmt.Sprintf(`{"t":%d}`, i), "", true, dests...),
			}))
		}
	}()
	got := make([][]string, len(dests))
	for i, d := range dests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			idle := 0
			for idle < 200 && len(got[i]) < n {
				b, err := s.FedNextBatch(c, d, 7, 3)
				if err != nil {
					t.Error(err)
					return
				}
				if b.Empty() {
					idle++
					continue
				}
				p, _ := fedNames(b)
				got[i] = append(got[i], p...)
				ids := append(fedIDs(b.PDUs), fedIDs(b.EDUs)...)
				if err := s.FedDelivered(c, []store.FedDone{{Destination: d, PDUs: fedIDs(b.PDUs), EDUs: fedIDs(b.EDUs)}}, 1); err != nil {
					t.Error(err)
					return
				}
				if _, err := s.FedCollect(c, ids); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for i, d := range dests {
		// Whatever the workers did not get before giving up is still queued.
		for {
			b, err := s.FedNextBatch(c, d, 50, 100)
			must(t, err)
			if b.Empty() {
				break
			}
			p, _ := fedNames(b)
			got[i] = append(got[i], p...)
			must(t, s.FedDelivered(c, []store.FedDone{{Destination: d, PDUs: fedIDs(b.PDUs), EDUs: fedIDs(b.EDUs)}}, 1))
			_, err = s.FedCollect(c, append(fedIDs(b.PDUs), fedIDs(b.EDUs)...))
			must(t, err)
		}
		var want []string
		for j := range n {
			want = append(want, fmt.Sprintf("$%03d", j))
		}
		equal(t, d+" PDUs", got[i], want)
	}
	left, err := s.FedCollect(c, nil)
	must(t, err)
	if left != 0 {
		t.Fatalf("%d payloads left behind", left)
	}
}

// testPersistEventsFed: events written with Fed destinations are queued for
// them in the write's transaction (store.NewEvent.Fed), in the order
// written, behind what was queued before; a refused write queues nothing.
func testPersistEventsFed(t *testing.T, s store.Store) {
	c := ctx()
	must(t, s.FedEnqueue(c, []store.FedEnqueue{fedPDU("$before", "a.test")}))
	r := newRoom(t, s, "!f:x", "@a:x")
	m1 := r.ev("m.room.message", nil, "@a:x", `{"n":1}`)
	m1.Fed = []string{"a.test", "b.test", "a.test"}
	m2 := r.ev("m.room.name", sk(""), "@a:x", `{"name":"n"}`)
	m2.Fed = []string{"b.test", "a.test"}
	r.send(t, m1, m2)
	quiet := r.ev("m.room.message", nil, "@a:x", `{}`) // no destination
	r.send(t, quiet)
	// Refused writes: a stale head, and a batch whose second event repeats
	// an event ID.
	stale := r.ev("m.room.message", nil, "@a:x", `{}`)
	stale.PrevEvents = []string{m1.EventID}
	stale.Fed = []string{"a.test", "c.test"}
	_, err := s.PersistEvents(c, "!f:x", []store.NewEvent{stale})
	wantErr(t, err, store.ErrRoomChanged)
	ok := r.ev("m.room.message", nil, "@a:x", `{}`)
	ok.Fed = []string{"c.test"}
	dup := r.ev("m.room.message", nil, "@a:x", `{}`)
	dup.EventID, dup.PrevEvents, dup.Fed = m1.EventID, []string{ok.EventID}, []string{"c.test"}
	_, err = s.PersistEvents(c, "!f:x", []store.NewEvent{ok, dup})
	wantErr(t, err, store.ErrConflict)

	b, err := s.FedNextBatch(c, "a.test", 50, 100)
	must(t, err)
	p, _ := fedNames(b)
	equal(t, "a PDUs", p, []string{"$before", m1.EventID, m2.EventID})
	if string(b.PDUs[1].JSON) != string(m1.JSON) || string(b.PDUs[2].JSON) != string(m2.JSON) {
		t.Fatalf("queued JSON %s, %s", b.PDUs[1].JSON, b.PDUs[2].JSON)
	}
	b, err = s.FedNextBatch(c, "b.test", 50, 100)
	must(t, err)
	p, _ = fedNames(b)
	equal(t, "b PDUs", p, []string{m1.EventID, m2.EventID})
	ds, err := s.FedDestinations(c)
	must(t, err)
	equal(t, "destinations", ds, []store.FedDestination{{Destination: "a.test"}, {Destination: "b.test"}})
	// Events of a new room too (CreateRoom).
	create := store.NewEvent{EventID: "$fc", RoomID: "!g:x", Type: "m.room.create", StateKey: sk(""), Sender: "@a:x", Depth: 1,
		OriginServerTS: 1, JSON: []byte(`{"c":1}`), Fed: []string{"c.test"}}
	_, err = s.CreateRoom(c, &store.Room{RoomID: "!g:x", Version: "10", Creator: "@a:x", CreatedTS: 1}, []store.NewEvent{create})
	must(t, err)
	b, err = s.FedNextBatch(c, "c.test", 50, 100)
	must(t, err)
	p, _ = fedNames(b)
	equal(t, "c PDUs", p, []string{"$fc"})
}

// testGraphWriteFed: a received event this server relays (a send_join's
// join) is queued for its Fed destinations in the write's transaction; a
// write refused (the event is known) queues nothing again.
func testGraphWriteFed(t *testing.T, s store.Store) {
	c := ctx()
	g := newGraphRoom(t, s, "!gf:x")
	base := g.head[0]
	j := g.ev("m.room.member", sk("@b:y"), "@b:y", `{"membership":"join"}`)
	j.Membership = "join"
	j.PrevEvents = []string{base}
	j.Fed = []string{"z.test", "w.test"}
	w := &store.GraphWrite{Event: j, StateBefore: g.groups[base], Extremities: []string{j.EventID}}
	_, _, err := s.PersistGraphEvent(c, w)
	must(t, err)
	_, _, err = s.PersistGraphEvent(c, w)
	wantErr(t, err, store.ErrConflict)
	for _, d := range []string{"w.test", "z.test"} {
		b, err := s.FedNextBatch(c, d, 50, 100)
		must(t, err)
		p, _ := fedNames(b)
		equal(t, d+" PDUs", p, []string{j.EventID})
		if string(b.PDUs[0].JSON) != string(j.JSON) {
			t.Fatalf("queued JSON %s", b.PDUs[0].JSON)
		}
	}
}
