package storetest

import (
	"errors"
	"sync"
	"testing"

	"conclave/internal/store"
)

// testThreadSubscriptions: rows swapped only from the position read, each
// change at a new stream position, an unsubscription's position kept,
// changes listed latest first within bounds, and two writers from one
// position: one wins.
func testThreadSubscriptions(t *testing.T, s store.Store) {
	const u, r = "@ts:x", "!ts:x"
	if _, err := s.ThreadSubscription(ctx(), u, r, "$t1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("no row: %v", err)
	}
	p1, ok, err := s.SwapThreadSubscription(ctx(), u, r, "$t1", true, true, 0)
	must(t, err)
	if !ok || p1 == 0 {
		t.Fatalf("first subscription: %d %v", p1, ok)
	}
	// A stale expectation writes nothing.
	if p, ok, err := s.SwapThreadSubscription(ctx(), u, r, "$t1", true, false, 0); err != nil || ok || p != 0 {
		t.Fatalf("stale swap: %d %v %v", p, ok, err)
	}
	got, err := s.ThreadSubscription(ctx(), u, r, "$t1")
	must(t, err)
	equal(t, "row", got, store.ThreadSubscription{RoomID: r, ThreadID: "$t1", Subscribed: true, Automatic: true, Pos: p1})
	p2, ok, err := s.SwapThreadSubscription(ctx(), u, r, "$t1", false, false, p1)
	must(t, err)
	if !ok || p2 <= p1 {
		t.Fatalf("unsubscription: %d %v", p2, ok)
	}
	p3, _, err := s.SwapThreadSubscription(ctx(), u, r, "$t2", true, false, 0)
	must(t, err)
	p4, _, err := s.SwapThreadSubscription(ctx(), u, r, "$t1", true, false, p2)
	must(t, err)
	got, err = s.ThreadSubscription(ctx(), u, r, "$t1")
	must(t, err)
	equal(t, "resubscribed", got, store.ThreadSubscription{RoomID: r, ThreadID: "$t1", Subscribed: true, UnsubscribedPos: p2, Pos: p4})
	// Another user's rows are not listed.
	_, _, err = s.SwapThreadSubscription(ctx(), "@other:x", r, "$t1", true, false, 0)
	must(t, err)
	all, err := s.ThreadSubscriptionChanges(ctx(), u, 0, p4, 10)
	must(t, err)
	if len(all) != 2 || all[0].ThreadID != "$t2" || all[0].Pos != p3 || all[1].ThreadID != "$t1" || all[1].Pos != p4 {
		t.Fatalf("changes: %+v", all)
	}
	latest, err := s.ThreadSubscriptionChanges(ctx(), u, 0, p4, 1)
	must(t, err)
	if len(latest) != 1 || latest[0].Pos != p4 {
		t.Fatalf("latest: %+v", latest)
	}
	if before, err := s.ThreadSubscriptionChanges(ctx(), u, p3, p4-1, 10); err != nil || len(before) != 0 {
		t.Fatalf("bounded: %+v %v", before, err)
	}
	// Two writers from the same position: exactly one writes.
	var wg sync.WaitGroup
	wins := make(chan bool, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, ok, err := s.SwapThreadSubscription(ctx(), u, r, "$t3", true, true, 0)
			if err != nil {
				t.Error(err)
			}
			wins <- ok
		}()
	}
	wg.Wait()
	close(wins)
	n := 0
	for ok := range wins {
		if ok {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d concurrent swaps from one position won", n)
	}
}

// testSlidingStamps: a user's saved stamps, replaced only by later ones.
func testSlidingStamps(t *testing.T, s store.Store) {
	if _, _, err := s.SlidingStamps(ctx(), "@st:x"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("none saved: %v", err)
	}
	must(t, s.PutSlidingStamps(ctx(), "@st:x", 10, []byte("ten")))
	must(t, s.PutSlidingStamps(ctx(), "@st:x", 5, []byte("five"))) // older: kept out
	pos, raw, err := s.SlidingStamps(ctx(), "@st:x")
	must(t, err)
	if pos != 10 || string(raw) != "ten" {
		t.Fatalf("after an older save: %d %q", pos, raw)
	}
	must(t, s.PutSlidingStamps(ctx(), "@st:x", 12, []byte("twelve")))
	if pos, raw, err = s.SlidingStamps(ctx(), "@st:x"); err != nil || pos != 12 || string(raw) != "twelve" {
		t.Fatalf("after a later save: %d %q %v", pos, raw, err)
	}
}
