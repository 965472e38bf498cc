package storetest

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"conclave/internal/store"
)

// testStreamOrder runs writers of every kind at once while a reader checks
// the promise /sync relies on: once MaxStreamPos says N, every change at a
// position up to N is visible. Positions are unique across kinds.
func testStreamOrder(t *testing.T, s store.Store) {
	newUser(t, s, "@a:x")
	rooms := []*room{newRoom(t, s, "!r1:x", "@a:x"), newRoom(t, s, "!r2:x", "@a:x")}
	base := maxPos(t, s)
	const each = 25
	var wg sync.WaitGroup
	var done atomic.Bool
	errs := make(chan error, 16)
	var mu sync.Mutex
	positions := map[int64]string{}
	record := func(kind string, ps ...int64) {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range ps {
			if old, dup := positions[p]; dup {
				errs <- fmt.Errorf("position %d given to %s and %s", p, old, kind)
			}
			positions[p] = kind
		}
	}
	// Account data: each write a new row, so every position stays visible.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < each; i++ {
			p, err := s.PutAccountData(ctx(), "@a:x", "", fmt.Sprintf("t%d", i), []byte(`{}`))
			if err != nil {
				errs <- err
				return
			}
			record("account data", p)
		}
	}()
	for _, r := range rooms {
		wg.Add(1)
		go func(r *room) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				e := r.ev("m.room.message", nil, "@a:x", `{}`)
				ps, err := s.PersistEvents(ctx(), r.id, []store.NewEvent{e, r.ev("m.room.message", nil, "@a:x", `{}`)})
				if err != nil {
					errs <- err
					return
				}
				r.head = nil
				record("events "+r.id, ps...)
			}
		}(r)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < each; i++ {
			p, err := s.PutReceipt(ctx(), &store.Receipt{RoomID: "!r1:x", UserID: fmt.Sprintf("@u%d:x", i), Type: "m.read", EventID: "$x", TS: 1})
			if err != nil {
				errs <- err
				return
			}
			record("receipt", p)
		}
	}()
	// The reader: everything up to the max it read is there.
	var reads atomic.Int64
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for !done.Load() {
			m, err := s.MaxStreamPos(ctx())
			if err != nil {
				errs <- err
				return
			}
			seen := map[int64]bool{}
			items, err := s.AccountDataSince(ctx(), "@a:x", base)
			if err != nil {
				errs <- err
				return
			}
			for _, it := range items {
				seen[it.Pos] = true
			}
			for _, r := range rooms {
				evs, err := s.RoomEvents(ctx(), store.RoomEventsQuery{RoomID: r.id, After: base, Limit: 1000})
				if err != nil {
					errs <- err
					return
				}
				for _, e := range evs {
					seen[e.Pos] = true
				}
			}
			rs, err := s.ReceiptsSince(ctx(), []string{"!r1:x"}, base)
			if err != nil {
				errs <- err
				return
			}
			for _, r := range rs {
				seen[r.Pos] = true
			}
			for p := base + 1; p <= m; p++ {
				if !seen[p] {
					errs <- fmt.Errorf("max stream position %d read, but position %d is not visible", m, p)
					return
				}
			}
			reads.Add(1)
		}
	}()
	wg.Wait()
	done.Store(true)
	<-readerDone
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	want := int64(each * (1 + 2*2 + 1))
	if top := maxPos(t, s); top != base+want || int64(len(positions)) != want {
		t.Fatalf("max %d, %d positions, want %d", top, len(positions), base+want)
	}
	t.Logf("%d consistent reads during the writes", reads.Load())
}
