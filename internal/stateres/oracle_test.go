package stateres

import (
	"fmt"
	"maps"
	"os"
	"strconv"
	"testing"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"conclave/internal/authrules"
)

// oracle resolves the sets with gomatrixserverlib (Apache-2.0, a test-only
// dependency): ResolveConflictsNew, the entry point that splits the state
// sets itself and has the v2.1 code (ResolveConflicts sends v2.1 rooms to
// the v2 algorithm). A panic is returned as an error.
func oracle(d *dag, sets []StateMap) (out StateMap, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("oracle panicked: %v", p)
		}
	}()
	ver := gmsl.MustGetRoomVersion(gmsl.RoomVersion(d.rv.ID))
	conv := map[string]gmsl.PDU{}
	pdu := func(id string) gmsl.PDU {
		if p, ok := conv[id]; ok {
			return p
		}
		ev := d.events[id]
		p, err := ver.NewEventFromTrustedJSON(ev.Raw, false)
		if err != nil {
			panic(err)
		}
		if p.EventID() != id {
			panic("event ID mismatch " + p.EventID() + " " + id)
		}
		conv[id] = p
		return p
	}
	var stateSets [][]gmsl.PDU
	var auth []gmsl.PDU
	seen := map[string]bool{}
	var stack []string
	for _, s := range sets {
		var list []gmsl.PDU
		for _, id := range s {
			list = append(list, pdu(id))
			stack = append(stack, id)
		}
		stateSets = append(stateSets, list)
	}
	for len(stack) > 0 {
		id := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, a := range pdu(id).AuthEventIDs() {
			if !seen[a] {
				seen[a] = true
				auth = append(auth, pdu(a))
				stack = append(stack, a)
			}
		}
	}
	userID := func(_ spec.RoomID, s spec.SenderID) (*spec.UserID, error) { return spec.NewUserID(string(s), true) }
	res, err := gmsl.ResolveConflictsNew(ver.Version(), stateSets, auth, userID, func(id string) bool { return d.rejected[id] })
	if err != nil {
		return nil, err
	}
	out = StateMap{}
	for _, p := range res {
		out[authrules.StateKey{Type: p.Type(), StateKey: *p.StateKey()}] = p.EventID()
	}
	return out, nil
}

func oracleCount(tb testing.TB) int {
	if s := os.Getenv("CONCLAVE_STATERES_DAGS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			tb.Fatal(err)
		}
		return n
	}
	if testing.Short() {
		return 200
	}
	return 2000
}

// TestOracle resolves random conflicted DAGs with this package and with
// gomatrixserverlib and compares.
func TestOracle(t *testing.T) {
	for _, version := range []string{"10", "11", "12"} {
		t.Run("v"+version, func(t *testing.T) {
			n := oracleCount(t)
			agree, differ, panics := 0, 0, 0
			shown := 0
			for seed := uint64(1); seed <= uint64(n); seed++ {
				d, sets := randomDAG(t, version, seed)
				if len(sets) < 2 {
					continue
				}
				ours := d.resolve(sets...)
				theirs, err := oracle(d, sets)
				if err != nil {
					panics++
					if shown < 3 {
						shown++
						t.Logf("seed %d: %v", seed, err)
					}
					continue
				}
				if maps.Equal(ours, theirs) {
					agree++
					continue
				}
				differ++
				if shown < 3 {
					shown++
					t.Logf("seed %d differs:\n ours   %s\n theirs %s", seed, d.describe(diffOnly(ours, theirs)), d.describe(diffOnly(theirs, ours)))
				}
			}
			t.Logf("room version %s: %d DAGs, %d agree, %d differ, %d oracle errors", version, n, agree, differ, panics)
		})
	}
}

func diffOnly(a, b StateMap) StateMap {
	out := StateMap{}
	for k, v := range a {
		if b[k] != v {
			out[k] = v
		}
	}
	return out
}
