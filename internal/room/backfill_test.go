package room

import (
	"slices"
	"testing"
)

func TestPrevEventsOf(t *testing.T) {
	for pdu, want := range map[string][]string{
		`{"prev_events":["$a","$b"]}`: {"$a", "$b"},
		// Room versions 1 and 2: [event ID, hashes] pairs.
		`{"prev_events":[["$a:x",{"sha256":"h"}],["$b:x",{}]]}`: {"$a:x", "$b:x"},
		`{"prev_events":[]}`:         {},
		`{"prev_events":[1,[],[2]]}`: {},
		`not json`:                   nil,
	} {
		if got := PrevEventsOf([]byte(pdu)); !slices.Equal(got, want) {
			t.Errorf("%s: %q, want %q", pdu, got, want)
		}
	}
}
