package stateres

import (
	"fmt"
	"maps"
	"math/bits"
	"os"
	"slices"
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

// dagCount is the number of random DAGs a comparison test resolves per room
// version: CONCLAVE_STATERES_DAGS, else def (a tenth of it with -short).
func dagCount(tb testing.TB, def int) int {
	if s := os.Getenv("CONCLAVE_STATERES_DAGS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			tb.Fatal(err)
		}
		return n
	}
	if testing.Short() {
		return def / 10
	}
	return def
}

// maxUnexplainedPercent bounds the DAGs that may differ from the oracle
// without one of its known deviations explaining it (see TestOracle).
const maxUnexplainedPercent = 7

// gmslQuirkNames names the gomatrixserverlib deviations the reference can
// emulate (reference_test.go), for the oracle report.
var gmslQuirkNames = map[gmslQuirks]string{
	gmslAuthFallbackSelf:      "auth-fallback-adds-event-itself",
	gmslNoPLPowerZero:         "creator-power-0-without-power-levels",
	gmslReverseKahn:           "topological-sort-from-the-end",
	gmslMainlineSteps:         "mainline-steps-tie-break",
	gmslControlFromConflicted: "power-set-walks-conflicted-only",
}

func (q gmslQuirks) String() string {
	s := ""
	for b := gmslQuirks(1); b <= q && b != 0; b <<= 1 {
		if q&b != 0 {
			if s != "" {
				s += "+"
			}
			s += gmslQuirkNames[b]
		}
	}
	return s
}

// quirkCombos lists every non-empty set of quirks, smallest sets first, so
// that a disagreement is attributed to the fewest deviations explaining it.
var quirkCombos = func() []gmslQuirks {
	var out []gmslQuirks
	for q := gmslQuirks(1); q < 1<<gmslQuirkCount; q++ {
		out = append(out, q)
	}
	slices.SortStableFunc(out, func(a, b gmslQuirks) int { return bits.OnesCount8(uint8(a)) - bits.OnesCount8(uint8(b)) })
	return out
}()

// TestOracle resolves random conflicted DAGs with this package and with
// gomatrixserverlib and compares. This package is checked against the spec by
// the reference resolver (TestReferenceRandom); gomatrixserverlib deviates
// from the spec in known ways, so a disagreement must be explained by them:
// the reference with the smallest set of them switched on (refOptions.gmsl,
// test code only; Resolve has no such switches) must then give
// gomatrixserverlib's answer. Each deviation was checked against the spec
// text and gomatrixserverlib's source (v0.0.0-20250815065806-6697d93cbcba,
// stateresolutionv2.go):
//
//   - auth-fallback-adds-event-itself: authAndApplyEvents
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
//   - mainline-steps-tie-break: sortStateResV2ConflictedOtherHeap orders by
//     mainline position counted from the oldest power levels event, an event
//     off the mainline keeping position 0 (the spec: infinity, sorted
//     first), then by the steps taken to reach the mainline (no such rule in
//     the spec), then origin_server_ts and event ID.
//   - power-set-walks-conflicted-only: fullControlSet follows auth events
//     only into conflictedEventMap (the conflicted state set), so an event of
//     the auth difference that a power event cites is not in X ("the events
//     in the auth chain of P which also belong to the full conflicted set")
//     but sorted by the mainline in step 3 (Synapse walks the full
//     conflicted set, _add_event_and_auth_chain_to_graph).
//
// Room version 12: ResolveConflictsNew → ResolveStateConflictsV2New for
// StateResV2_1 panics ("missing resolved create event" in
// getPowerLevelFromAuthEvents: v2.1 starts from an empty state, so the
// create event is not resolved unless conflicted) on almost every DAG; it is
// no oracle for v2.1, which the reference checks instead. The few v12 DAGs it
// returns on are compared all the same.
func TestOracle(t *testing.T) {
	for _, version := range allVersions {
		t.Run("v"+version, func(t *testing.T) {
			n := dagCount(t, 800)
			if version == "12" {
				n = max(n/8, 1)
			}
			agree, errs, unexplained, fallbackUnexplained := 0, 0, 0, 0
			explained := map[gmslQuirks]int{}
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
				for _, q := range quirkCombos {
					alt, err := refResolve(d.rv, sets, d, refOptions{gmsl: q})
					if err == nil && maps.Equal(alt, theirs) {
						explained[q]++
						found = true
						break
					}
				}
				if found {
					continue
				}
				unexplained++
				flips := 0
				refResolve(d.rv, sets, d, refOptions{gmsl: gmslAuthFallbackSelf, fallbackFlips: &flips})
				if flips > 0 {
					fallbackUnexplained++
				}
				if shown < 2 && testing.Verbose() {
					shown++
					t.Logf("seed %d differs from gomatrixserverlib without explanation:\n ours   %s\n theirs %s", seed,
						d.describe(diffOnly(ours, theirs)), d.describe(diffOnly(theirs, ours)))
				}
			}
			t.Logf("room version %s: %d DAGs: %d agree with gomatrixserverlib, %d oracle errors, %d differ by its known deviations, %d unexplained",
				version, n, agree, errs, n-agree-errs-unexplained, unexplained)
			t.Logf("  of the unexplained, %d are DAGs where the auth fallback bug changes an auth decision", fallbackUnexplained)
			for _, q := range quirkCombos {
				if c := explained[q]; c > 0 {
					t.Logf("  %d differ as the oracle's %s", c, q)
				}
			}
			// The emulation of the auth fallback bug is not exact: once
			// gomatrixserverlib authorises an event against an auth state
			// holding the event itself in place of its auth events, the
			// outcome depends on its own auth rules' handling of such a
			// state (e.g. seed 28: the power levels and join rules are
			// refused for want of the sender's membership, then members
			// join a room with no join rules), which authrules does not
			// mimic. Those DAGs stay unexplained here; this package is
			// checked on them by the reference. More than the bound means a
			// change here.
			if unexplained*100 > n*maxUnexplainedPercent {
				t.Errorf("%d of %d DAGs differ from the oracle without explanation (more than %d%%)", unexplained, n, maxUnexplainedPercent)
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
