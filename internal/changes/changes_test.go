package changes

import (
	"math/rand/v2"
	"testing"
)

func TestChangedAroundACommit(t *testing.T) {
	pos := int64(10)
	tr := New(func() int64 { return pos })
	k := Key{ToDevice, "@a:x"}
	if !tr.Known(10) || tr.Known(9) {
		t.Fatal("floor is the committed position at start")
	}
	if tr.Changed(k, 10, 10) {
		t.Fatal("nothing written yet")
	}
	w := tr.Begin(k)
	// In flight: a reader whose upper bound is above the write's floor must
	// look, one whose bound is at the floor need not (the write lands later).
	if tr.Changed(k, 10, 10) {
		t.Fatal("a write beginning at 10 cannot land at or below 10")
	}
	pos = 11 // committed, not yet Done: the window the old counters lost
	if !tr.Changed(k, 10, 11) {
		t.Fatal("committed write still in flight must count as changed")
	}
	w.Done(11)
	if !tr.Changed(k, 10, 11) || tr.Changed(k, 11, 11) || tr.Changed(Key{ToDevice, "@b:x"}, 10, 11) {
		t.Fatal("after Done")
	}
	w.Done(99) // a second Done changes nothing
	if tr.Changed(k, 11, 200) {
		t.Fatal("second Done recorded")
	}
}

func TestTicks(t *testing.T) {
	tr := New(func() int64 { return 0 })
	k := Key{Sessions, "@a:x"}
	tick := tr.Tick()
	if !tr.Unchanged(k, tick) {
		t.Fatal("nothing happened")
	}
	w := tr.Begin(k)
	if tr.Unchanged(k, tick) || tr.Unchanged(k, tr.Tick()) {
		t.Fatal("in flight")
	}
	w.Done(0)
	if tr.Unchanged(k, tick) {
		t.Fatal("changed after tick")
	}
	if !tr.Unchanged(k, tr.Tick()) {
		t.Fatal("a value loaded after Done is current")
	}
}

func TestNilTrackerKnowsNothing(t *testing.T) {
	var tr *Tracker
	w := tr.Begin(Key{ToDevice, "@a:x"})
	w.Done(3)
	if tr.Known(0) || !tr.Changed(Key{}, 5, 5) || tr.Unchanged(Key{}, 0) || !tr.Flying(Key{}, 1) {
		t.Fatal("nil tracker must send everyone to the store")
	}
}

// The property the whole server relies on: for any interleaving of writes
// (begin, commit in position order, done) and readers (who read the
// committed position, then ask), Changed never answers false for a key that
// has a change committed in (since, upto], and Unchanged never answers true
// for a key written after the tick. Run with a small bound so that
// forgetting is exercised too.
func TestPropertyNeverMissesACommittedChange(t *testing.T) {
	for seed := uint64(0); seed < 200; seed++ {
		r := rand.New(rand.NewPCG(seed, 7))
		var committed int64 = 5
		tr := New(func() int64 { return committed })
		tr.SetMaxSubjects(2 + r.IntN(6))
		keys := []Key{{ToDevice, "a"}, {ToDevice, "b"}, {Receipts, "r1"}, {Receipts, "r2"}, {AccountData, "a"}, {RoomEvents, "r1"}, {RoomEvents, "r3"}}
		type write struct {
			w     *Write
			keys  []Key
			pos   int64 // 0 until committed
			ticks uint64
		}
		doneTicks := map[Key][]uint64{} // the tick just after each Done
		var flying []*write
		type change struct {
			k    Key
			pos  int64
			tick uint64 // the tick just before Begin
		}
		var history []change
		for step := 0; step < 300; step++ {
			switch op := r.IntN(4); {
			case op == 0 && len(flying) < 4:
				n := 1 + r.IntN(2)
				ks := make([]Key, 0, n)
				for range n {
					ks = append(ks, keys[r.IntN(len(keys))])
				}
				tick := tr.Tick()
				flying = append(flying, &write{w: tr.Begin(ks...), keys: ks, ticks: tick})
			case op == 1 && len(flying) > 0:
				// Commit the oldest uncommitted write (positions in commit
				// order), maybe allocating several positions.
				for _, w := range flying {
					if w.pos == 0 {
						committed += 1 + int64(r.IntN(2))
						w.pos = committed
						for _, k := range w.keys {
							history = append(history, change{k, w.pos, w.ticks})
						}
						break
					}
				}
			case op == 2 && len(flying) > 0:
				i := r.IntN(len(flying))
				w := flying[i]
				if w.pos == 0 && r.IntN(3) > 0 {
					break // mostly finish committed writes; sometimes a failed one
				}
				reported := w.pos
				if r.IntN(2) == 0 {
					reported = 0 // position unknown to the writer
				}
				w.w.Done(reported)
				for _, k := range w.keys {
					doneTicks[k] = append(doneTicks[k], tr.Tick())
				}
				flying = append(flying[:i], flying[i+1:]...)
			default:
				upto := committed
				since := upto - int64(r.IntN(8))
				k := keys[r.IntN(len(keys))]
				if tr.Known(since) && !tr.Changed(k, since, upto) {
					for _, c := range history {
						if c.k == k && c.pos > since && c.pos <= upto {
							t.Fatalf("seed %d step %d: %v changed at %d, reported unchanged in (%d, %d]", seed, step, k, c.pos, since, upto)
						}
					}
				}
				tick := uint64(r.IntN(int(tr.Tick()) + 1))
				if tr.Unchanged(k, tick) {
					for _, c := range history {
						if c.k == k && c.tick >= tick {
							t.Fatalf("seed %d step %d: %v written after tick %d, reported unchanged", seed, step, k, tick)
						}
					}
					for _, dt := range doneTicks[k] {
						if dt > tick {
							t.Fatalf("seed %d step %d: %v done after tick %d, reported unchanged", seed, step, k, tick)
						}
					}
					for _, w := range flying {
						for _, wk := range w.keys {
							if wk == k {
								t.Fatalf("seed %d step %d: %v in flight, reported unchanged", seed, step, k)
							}
						}
					}
				}
			}
		}
	}
}
