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

// maxUnexplainedPercent bounds the DAGs that may differ from the oracle
// without one of its known deviations explaining it (see TestOracle).
const maxUnexplainedPercent = 8

// quirkNames names the gomatrixserverlib deviations (see quirks.go) for the
// oracle report.
var quirkNames = map[quirks]string{
	quirkAuthFallbackSelf: "auth-fallback-adds-event-itself",
	quirkNoPLPowerZero:    "creator-power-0-without-power-levels",
	quirkReverseKahn:      "topological-sort-from-the-end",
	quirkMainlineSteps:    "mainline-steps-tie-break",
}

func (q quirks) String() string {
	s := ""
	for b := quirks(1); b <= q; b <<= 1 {
		if q&b != 0 {
			if s != "" {
				s += "+"
			}
			s += quirkNames[b]
		}
	}
	return s
}

// TestOracle resolves random conflicted DAGs with this package and with
// gomatrixserverlib and compares. A disagreement must be explained by the
// oracle's known deviations from the spec: with the smallest set of them
// switched on here (quirks.go), this package must then agree. Each deviation
// was checked against the spec text:
//
//   - auth-fallback-adds-event-itself: stateResolverV2.authAndApplyEvents
//     (addFromAuthEventsIfNotRejected) calls AddEvent(event), not
//     AddEvent(authEv), so the event's own auth event is never used; the
//     spec's iterative auth checks say "the appropriate state event from the
//     event's auth_events is used". E.g. a member's power levels change is
//     refused because the member's membership, conflicted, is missing.
//   - creator-power-0-without-power-levels: getPowerLevelFromAuthEvents
//     returns 0 when the auth events hold no m.room.power_levels; the
//     sender's power level "when looking at their auth_events" is 100 for the
//     creator before v12 (m.room.power_levels defaults; Synapse agrees).
//   - topological-sort-from-the-end: kahnsAlgorithmUsingAuthEvents starts
//     from the events no other cites and prepends the greatest each time; the
//     spec takes, among the events whose auth events are all placed, the
//     smallest (Synapse's lexicographical_topological_sort does).
//
// Room version 12: ResolveConflictsNew → ResolveStateConflictsV2New for
// StateResV2_1 panics (nil dereference) or returns a state without the
// events the auth fallback should have allowed, because v2.1 starts from an
// empty state and every check then meets the fallback bug above; it is no
// oracle for v2.1. v12 DAGs are therefore compared with the oracle only when
// it returns, and are also resolved as room version 11 to check that v2.1
// and v2 agree where they must (see TestV21MatchesV2WithoutSubgraph).
func TestOracle(t *testing.T) {
	for _, version := range []string{"10", "11", "12"} {
		t.Run("v"+version, func(t *testing.T) {
			n := oracleCount(t)
			agree, errs, unexplained, dropped := 0, 0, 0, 0
			explained := map[quirks]int{}
			shown := 0
			for seed := uint64(1); seed <= uint64(n); seed++ {
				d, sets := randomDAG(t, version, seed)
				ours := d.resolve(sets...)
				theirs, err := oracle(d, sets)
				if err != nil {
					errs++
					continue
				}
				if maps.Equal(ours, theirs) {
					agree++
					continue
				}
				found := false
				for q := quirks(1); q < 1<<len(quirkNames) && !found; q++ {
					alt, err := resolve(d.rv, sets, d, MaxEvents, q)
					if err == nil && maps.Equal(alt, theirs) {
						explained[q]++
						found = true
					}
				}
				if found {
					continue
				}
				unexplained++
				for key := range ours {
					if _, ok := theirs[key]; !ok {
						dropped++
						break
					}
				}
				if shown < 2 && testing.Verbose() {
					shown++
					t.Logf("seed %d differs without explanation:\n ours   %s\n theirs %s", seed,
						d.describe(diffOnly(ours, theirs)), d.describe(diffOnly(theirs, ours)))
				}
			}
			t.Logf("room version %s: %d DAGs: %d agree, %d oracle errors, %d unexplained (in %d the oracle drops a key)",
				version, n, agree, errs, unexplained, dropped)
			// The emulation of the auth fallback bug is not exact when
			// the oracle loses m.room.create or m.room.power_levels
			// from its auth state altogether (it then drops whole keys,
			// e.g. the power levels, from the room: a state reset the
			// spec does not allow). A few such DAGs stay unexplained;
			// more means a change here.
			if unexplained*100 > n*maxUnexplainedPercent {
				t.Errorf("%d of %d DAGs differ from the oracle without explanation (more than %d%%)", unexplained, n, maxUnexplainedPercent)
			}
			for q, c := range explained {
				t.Logf("  %d differ as the oracle's %s", c, q)
			}
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
