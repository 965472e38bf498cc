package stateres

import (
	"slices"
	"testing"

	"conclave/internal/authrules"
)

// fullSetNames runs the resolution up to the full conflicted set and returns
// its events' test names.
func fullSetNames(t *testing.T, d *dag, sets []StateMap) []string {
	t.Helper()
	r := &resolver{rv: d.rv, load: d, v21: d.rv.StateRes == 21, maxEvents: MaxEvents, base: sets[0],
		index: map[string]int32{}}
	r.separate(sets)
	var out []string
	for _, i := range r.fullConflictedSet(sets) {
		out = append(out, d.name(r.nodes[i].id))
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	slices.Sort(out)
	return out
}

// The conflicted state subgraph (v2.1 only): bob's old and new memberships
// conflict, and the power levels bob sent in between cite the old one and
// are cited by the new one. Both branches' auth chains hold that power
// levels event, so v2 leaves it out of the full conflicted set; v2.1 puts it
// in, because it is on an auth path between two conflicted events.
func TestConflictedSubgraph(t *testing.T) {
	for _, v := range []string{"11", "12"} {
		t.Run("v"+v, func(t *testing.T) {
			d, h := newDAG(t, v, map[string]int{bob: 100})
			d.must(h, "bob.join", bob, authrules.TypeMember, bob, member("join"))
			d.must(h, "pl.bob", bob, authrules.TypePowerLevels, "", plContent(levels(d, map[string]int{bob: 100, carol: 10}), nil))
			a, b := h.fork(), h.fork()
			d.must(a, "bob.rejoin", bob, authrules.TypeMember, bob, `{"membership":"join","displayname":"B"}`)
			d.must(b, "topic", alice, "m.room.topic", "", `{"topic":"t"}`)
			got := fullSetNames(t, d, []StateMap{a.state, b.state})
			want := []string{"bob.join", "bob.rejoin", "topic"}
			if d.rv.StateRes == 21 {
				want = []string{"bob.join", "bob.rejoin", "pl.bob", "topic"}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("full conflicted set = %v, want %v", got, want)
			}
			// Both algorithms keep bob's new membership and the topic.
			res := d.resolve(a.state, b.state)
			if d.name(res[k(authrules.TypeMember, bob)]) != "bob.rejoin" || d.name(res[k("m.room.topic", "")]) != "topic" {
				t.Fatalf("resolved %s", d.describe(res))
			}
		})
	}
}
