package stateres

import (
	"encoding/binary"
	"maps"
	"slices"
	"testing"
)

// FuzzResolve builds a random DAG from the fuzz input (its first 8 bytes seed
// the generator, the rest hide events from the Loader, mark events rejected
// and rewrite state set entries to other events), then checks that Resolve
// never panics, is deterministic and does not depend on the order of the sets.
func FuzzResolve(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{7, 0, 0, 0, 0, 0, 0, 0, 3, 9, 200, 14})
	f.Add([]byte{42, 1, 0, 0, 0, 0, 0, 0, 255, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 8 {
			return
		}
		seed := binary.LittleEndian.Uint64(data)
		versions := append([]string{"1"}, allVersions...)
		version := versions[seed%uint64(len(versions))]
		d, sets := randomDAG(t, version, seed)
		ids := slices.Sorted(maps.Keys(d.events))
		for i := 8; i+1 < len(data); i += 2 {
			id := ids[int(data[i+1])%len(ids)]
			switch data[i] % 4 {
			case 0:
				delete(d.events, id)
			case 1:
				d.rejected[id] = true
			default:
				ev := d.events[id]
				if ev == nil || ev.StateKey == nil {
					continue
				}
				s := sets[int(data[i])%len(sets)]
				s[k(ev.Type, *ev.StateKey)] = id
			}
		}
		a, errA := Resolve(d.rv, sets, d)
		b, errB := Resolve(d.rv, sets, d)
		c, errC := Resolve(d.rv, reversed(sets), d)
		if (errA == nil) != (errB == nil) || (errA == nil) != (errC == nil) {
			t.Fatalf("errors differ: %v %v %v", errA, errB, errC)
		}
		if !maps.Equal(a, b) {
			t.Fatal("not deterministic")
		}
		if !maps.Equal(a, c) {
			t.Fatal("depends on the order of the sets")
		}
	})
}
