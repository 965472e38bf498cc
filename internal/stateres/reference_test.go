package stateres

import (
	"encoding/json"
	"errors"
	"maps"
	"math"
	"slices"

	"conclave/internal/authrules"
	"conclave/internal/event"
)

// This file is a reference resolver: the spec's state resolution v2 (room
// versions 2–11, spec "Room Version 2", "State resolution") and v2.1 (room
// version 12, "Room Version 12", "State resolution") transcribed as literally
// as possible, with no attention to speed: sets are maps, every auth chain is
// recomputed from scratch, every sort is a full scan. It was written from the
// spec text and Synapse's synapse/state/v2.py (the reference implementation,
// which decides where the spec leaves a choice), without reading this
// package's implementation, so that comparing the two (reference_cmp_test.go)
// checks one against the other rather than against itself.
//
// Where the spec text leaves a choice, the reference does what Synapse does:
//
//   - The full auth chain of a state set S_i holds the events of S_i
//     themselves as well as their auth chains (Synapse's auth chain
//     difference starts its walk with them: an unconflicted event cited on
//     only one side is therefore not in the auth difference).
//   - "Power event" is read as Synapse's _is_power_event: (m.room.power_levels,
//     ""), (m.room.join_rules, ""), the m.room.create event, and a leave or
//     ban membership whose sender is not its state_key.
//   - In step 1, X is closed the way Synapse builds its sort graph
//     (_add_event_and_auth_chain_to_graph): from each power event, walk its
//     auth_events, keeping and walking on only those in the full conflicted
//     set; the topological order uses those direct edges. The literal text
//     ("the events in the auth chain of P which also belong to the full
//     conflicted set") would also take full-conflicted-set events reachable
//     only through events outside it: refSpecX selects that reading, which
//     the comparison test measures (see TestReferenceReadings).
//   - From room version 12 the m.room.create event, implied by room_id, is an
//     auth event of every other event (Synapse's auth_event_ids appends it).
//   - The iterative auth checks skip rejected events, and rejected or unknown
//     events are never used as auth events nor walked through (spec,
//     "Rejected events": they "should not appear in the process").
//   - The signature-dependent auth rules (restricted joins, third-party
//     invites) use the Loader as an authrules.Verifier if it is one, and
//     otherwise take the event as signed by the authorising server and
//     refuse third-party invites: the random DAGs have neither.

// refOptions selects readings of the reference (all false: the default above).
type refOptions struct {
	// specX: step 1's X holds every event of the auth chain of a power
	// event that is in the full conflicted set, however it is reached, and
	// the topological order is that of the auth chains (x before y when x is
	// in y's auth chain).
	specX bool
	// gmsl emulates gomatrixserverlib's known deviations (see oracle_test.go).
	gmsl gmslQuirks
	// fallbackFlips, if not nil, counts the events whose auth decision
	// gmslAuthFallbackSelf changes (the oracle test's classification).
	fallbackFlips *int
}

// gmslQuirks are gomatrixserverlib's deviations from the spec, emulated by the
// reference for the oracle comparison only.
type gmslQuirks uint8

const (
	// gmslAuthFallbackSelf: the iterative auth checks' fallback to the
	// event's own auth_events adds the event itself, not the auth event
	// (stateResolverV2.authAndApplyEvents, addFromAuthEventsIfNotRejected:
	// AddEvent(event) where AddEvent(authEv) is meant).
	gmslAuthFallbackSelf gmslQuirks = 1 << iota
	// gmslNoPLPowerZero: a sender whose auth events hold no power levels has
	// power 0, the creator included (getPowerLevelFromAuthEvents).
	gmslNoPLPowerZero
	// gmslReverseKahn: the topological sort starts from the events no other
	// cites and prepends the greatest each time
	// (kahnsAlgorithmUsingAuthEvents), which is not the lexicographically
	// smallest order.
	gmslReverseKahn
	// gmslMainlineSteps: in the mainline order an event whose power levels
	// chain never meets the mainline ties with one based on the oldest
	// mainline event (its position is left 0, the oldest's, where the spec
	// has infinity), and equal positions are ordered by the number of power
	// levels events walked before meeting the mainline, fewest first, before
	// origin_server_ts (getFirstPowerLevelMainlineEvent,
	// sortStateResV2ConflictedOtherHeap).
	gmslMainlineSteps
	// gmslControlFromConflicted: step 1's X is the power events of the full
	// conflicted set and the events reached from them through auth_events
	// that are in the conflicted state set, not the full conflicted set
	// (ResolveStateConflictsV2New, fullControlSet walks conflictedEventMap):
	// the auth difference's other events go to the mainline step.
	gmslControlFromConflicted
	gmslQuirkCount = 5
)

// refDebug, when set by a test, sees the intermediate lists.
var refDebug func(what string, ids []string)

type refResolver struct {
	rv   *event.RoomVersion
	load Loader
	opt  refOptions
}

// refResolve resolves the sets with the reference.
func refResolve(rv *event.RoomVersion, sets []StateMap, load Loader, opt refOptions) (StateMap, error) {
	if rv == nil || (rv.StateRes != 2 && rv.StateRes != 21) {
		return nil, errors.New("reference: unsupported state resolution")
	}
	r := &refResolver{rv: rv, load: load, opt: opt}
	return r.resolve(sets), nil
}

// ev returns a usable event: known and not rejected.
func (r *refResolver) ev(id string) *event.PDU {
	e, rejected, ok := r.load.Event(id)
	if !ok || rejected || e == nil {
		return nil
	}
	return e
}

func isCreate(e *event.PDU) bool {
	return e.Type == authrules.TypeCreate && e.StateKey != nil && *e.StateKey == ""
}

// authIDs is the event's auth_events, plus from v12 the create event the
// room_id implies (for every event but the create event).
func (r *refResolver) authIDs(e *event.PDU) []string {
	ids := slices.Clone(e.AuthEvents)
	if r.rv.RoomIDFromCreateEvent && !isCreate(e) && len(e.RoomID) > 1 {
		ids = append(ids, "$"+e.RoomID[1:])
	}
	return ids
}

// authEvents is the usable events among authIDs.
func (r *refResolver) authEvents(e *event.PDU) []*event.PDU {
	var out []*event.PDU
	for _, id := range r.authIDs(e) {
		if a := r.ev(id); a != nil {
			out = append(out, a)
		}
	}
	return out
}

// authChain: "the set containing all of E's auth events, all of their auth
// events, and so on recursively".
func (r *refResolver) authChain(id string) map[string]bool {
	chain := map[string]bool{}
	e := r.ev(id)
	if e == nil {
		return chain
	}
	todo := []*event.PDU{e}
	for len(todo) > 0 {
		cur := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		for _, a := range r.authEvents(cur) {
			if !chain[a.EventID] {
				chain[a.EventID] = true
				todo = append(todo, a)
			}
		}
	}
	return chain
}

func (r *refResolver) resolve(sets []StateMap) StateMap {
	if len(sets) == 0 {
		return StateMap{}
	}
	// Unconflicted state map and conflicted state set.
	unconflicted := StateMap{}
	conflicted := map[string]bool{}
	keys := map[authrules.StateKey]bool{}
	for _, s := range sets {
		for key := range s {
			keys[key] = true
		}
	}
	for key := range keys {
		v, same := sets[0][key]
		for _, s := range sets[1:] {
			w, ok := s[key]
			if ok != same || w != v {
				same = false
			}
		}
		if same {
			unconflicted[key] = v
			continue
		}
		for _, s := range sets {
			if w, ok := s[key]; ok {
				conflicted[w] = true
			}
		}
	}
	if len(conflicted) == 0 {
		return unconflicted
	}

	// Auth difference: ∪C_i − ∩C_i, C_i the full auth chain of S_i (its
	// events and their auth chains, as Synapse computes it).
	chains := make([]map[string]bool, len(sets))
	for i, s := range sets {
		c := map[string]bool{}
		for _, id := range s {
			c[id] = true
			for a := range r.authChain(id) {
				c[a] = true
			}
		}
		chains[i] = c
	}
	full := map[string]bool{}
	for id := range conflicted {
		full[id] = true
	}
	for _, c := range chains {
		for id := range c {
			inAll := true
			for _, d := range chains {
				if !d[id] {
					inAll = false
				}
			}
			if !inAll {
				full[id] = true
			}
		}
	}
	// v2.1: the conflicted state subgraph, every event on an auth_events
	// path between two conflicted events: reached from a conflicted event,
	// and a conflicted event or reaching one.
	if r.rv.StateRes == 21 {
		for c := range conflicted {
			for x := range r.authChain(c) {
				if conflicted[x] {
					full[x] = true
					continue
				}
				for y := range r.authChain(x) {
					if conflicted[y] {
						full[x] = true
						break
					}
				}
			}
		}
	}
	// Only usable events take part (spec, "Rejected events").
	for id := range full {
		if r.ev(id) == nil {
			delete(full, id)
		}
	}

	// Step 1: X, the power events of the full conflicted set and the events
	// of their auth chains in it, in reverse topological power order.
	x, before := r.powerSet(full, conflicted)
	sorted := r.topoSort(x, before)
	if refDebug != nil {
		refDebug("X sorted", sorted)
	}

	// Step 2: iterative auth checks from the unconflicted state (v2) or
	// from an empty state (v2.1).
	state := StateMap{}
	if r.rv.StateRes == 2 {
		for k, v := range unconflicted {
			state[k] = v
		}
	}
	state = r.iterate(state, sorted)

	// Step 3: the other events in mainline order of the resolved power
	// levels.
	var rest []string
	for id := range full {
		if !x[id] {
			rest = append(rest, id)
		}
	}
	rest = r.mainlineSort(rest, state[authrules.StateKey{Type: authrules.TypePowerLevels}])

	if refDebug != nil {
		refDebug("rest sorted", rest)
		refDebug("after step 2", slices.Collect(maps.Values(state)))
	}
	// Step 4.
	state = r.iterate(state, rest)

	// Step 5.
	for k, v := range unconflicted {
		state[k] = v
	}
	return state
}

func (r *refResolver) isPower(e *event.PDU) bool {
	if e.StateKey == nil {
		return false
	}
	switch e.Type {
	case authrules.TypePowerLevels, authrules.TypeJoinRules, authrules.TypeCreate:
		return *e.StateKey == ""
	case authrules.TypeMember:
		m, _ := authrules.Membership(e)
		return (m == authrules.MembershipLeave || m == authrules.MembershipBan) && e.Sender != *e.StateKey
	}
	return false
}

// powerSet returns X and, for each event of X, the events of X that must
// come before it.
func (r *refResolver) powerSet(full, conflicted map[string]bool) (map[string]bool, map[string][]string) {
	walkable := full
	if r.opt.gmsl&gmslControlFromConflicted != 0 {
		walkable = conflicted
	}
	x := map[string]bool{}
	before := map[string][]string{}
	if r.opt.specX {
		for id := range full {
			if r.isPower(r.ev(id)) {
				x[id] = true
				for a := range r.authChain(id) {
					if full[a] {
						x[a] = true
					}
				}
			}
		}
		for id := range x {
			for a := range r.authChain(id) {
				if x[a] {
					before[id] = append(before[id], a)
				}
			}
		}
		return x, before
	}
	var todo []string
	for id := range full {
		if r.isPower(r.ev(id)) {
			x[id] = true
			todo = append(todo, id)
		}
	}
	for len(todo) > 0 {
		id := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		for _, a := range r.authIDs(r.ev(id)) {
			if walkable[a] && r.ev(a) != nil && !x[a] {
				x[a] = true
				todo = append(todo, a)
			}
		}
	}
	// The order's edges: the auth_events between events of X.
	for id := range x {
		for _, a := range r.authIDs(r.ev(id)) {
			if x[a] && !slices.Contains(before[id], a) {
				before[id] = append(before[id], a)
			}
		}
	}
	return x, before
}

// senderPower is the power level of the event's sender "when looking at
// their respective auth_events".
func (r *refResolver) senderPower(e *event.PDU) int64 {
	var pl, create *event.PDU
	for _, a := range r.authEvents(e) {
		if a.StateKey != nil && *a.StateKey == "" {
			switch a.Type {
			case authrules.TypePowerLevels:
				pl = a
			case authrules.TypeCreate:
				create = a
			}
		}
	}
	var content []byte
	if pl != nil {
		content = pl.Content
	} else if r.opt.gmsl&gmslNoPLPowerZero != 0 {
		return 0
	}
	p, err := authrules.ParsePowerLevels(r.rv, content, create)
	if err != nil {
		return 0
	}
	return p.UserLevel(e.Sender)
}

// topoSort is Kahn's algorithm choosing, among the events all of whose
// predecessors are placed, the smallest by: greater sender power, then
// smaller origin_server_ts, then smaller event ID.
func (r *refResolver) topoSort(x map[string]bool, before map[string][]string) []string {
	less := func(a, b string) bool {
		ea, eb := r.ev(a), r.ev(b)
		pa, pb := r.senderPower(ea), r.senderPower(eb)
		if pa != pb {
			return pa > pb
		}
		if ea.OriginServerTS != eb.OriginServerTS {
			return ea.OriginServerTS < eb.OriginServerTS
		}
		return a < b
	}
	if r.opt.gmsl&gmslReverseKahn != 0 {
		return r.reverseKahn(x, before, less)
	}
	placed := map[string]bool{}
	var out []string
	for len(out) < len(x) {
		best := ""
		for id := range x {
			if placed[id] {
				continue
			}
			ready := true
			for _, b := range before[id] {
				if !placed[b] {
					ready = false
				}
			}
			if ready && (best == "" || less(id, best)) {
				best = id
			}
		}
		if best == "" {
			// A cycle (only a corrupted graph has one): place the rest
			// in comparison order.
			var restIDs []string
			for id := range x {
				if !placed[id] {
					restIDs = append(restIDs, id)
				}
			}
			slices.SortFunc(restIDs, func(a, b string) int {
				if less(a, b) {
					return -1
				}
				return 1
			})
			return append(out, restIDs...)
		}
		placed[best] = true
		out = append(out, best)
	}
	return out
}

// reverseKahn is gomatrixserverlib's order: repeatedly take, among the events
// that no unplaced event must follow, the greatest, and put it in front.
func (r *refResolver) reverseKahn(x map[string]bool, before map[string][]string, less func(a, b string) bool) []string {
	placed := map[string]bool{}
	var out []string
	for len(out) < len(x) {
		best := ""
		for id := range x {
			if placed[id] {
				continue
			}
			ready := true
			for other := range x {
				if !placed[other] && slices.Contains(before[other], id) {
					ready = false
				}
			}
			if ready && (best == "" || less(best, id)) {
				best = id
			}
		}
		if best == "" {
			return out
		}
		placed[best] = true
		out = append([]string{best}, out...)
	}
	return out
}

// mainlineSort orders the events by the mainline ordering based on the power
// levels event pl ("" for none).
func (r *refResolver) mainlineSort(ids []string, pl string) []string {
	// The mainline of P0: P0, then the m.room.power_levels event of each
	// one's auth_events.
	var mainline []string
	seen := map[string]bool{}
	for p := r.ev(pl); p != nil && !seen[p.EventID]; p = r.plAuthEvent(p) {
		seen[p.EventID] = true
		mainline = append(mainline, p.EventID)
	}
	type key struct {
		pos, steps int
		ts         int64
	}
	keys := map[string]key{}
	quirk := r.opt.gmsl&gmslMainlineSteps != 0
	for _, id := range ids {
		e := r.ev(id)
		pos, steps := math.MaxInt, 0
		walked := map[string]bool{}
		// e_1, e_2, ...: the smallest j >= 1 with e_j on the mainline.
		for ej := r.plAuthEvent(e); ej != nil && !walked[ej.EventID]; ej = r.plAuthEvent(ej) {
			walked[ej.EventID] = true
			if i := slices.Index(mainline, ej.EventID); i >= 0 {
				pos = i
				break
			}
			steps++
		}
		if quirk && pos == math.MaxInt {
			pos = len(mainline) - 1
		}
		keys[id] = key{pos: pos, steps: steps, ts: e.OriginServerTS}
	}
	ids = slices.Clone(ids)
	slices.SortFunc(ids, func(a, b string) int {
		ka, kb := keys[a], keys[b]
		if ka.pos != kb.pos {
			// Greater position first: based on an earlier mainline event.
			if ka.pos > kb.pos {
				return -1
			}
			return 1
		}
		if quirk && ka.steps != kb.steps {
			if ka.steps < kb.steps {
				return -1
			}
			return 1
		}
		if ka.ts != kb.ts {
			if ka.ts < kb.ts {
				return -1
			}
			return 1
		}
		if a < b {
			return -1
		}
		if a > b {
			return 1
		}
		return 0
	})
	return ids
}

// plAuthEvent is the m.room.power_levels event among the event's auth
// events, or nil.
func (r *refResolver) plAuthEvent(e *event.PDU) *event.PDU {
	for _, a := range r.authEvents(e) {
		if a.Type == authrules.TypePowerLevels && a.StateKey != nil && *a.StateKey == "" {
			return a
		}
	}
	return nil
}

// iterate is the iterative auth checks algorithm.
func (r *refResolver) iterate(state StateMap, ids []string) StateMap {
	verifier, _ := r.load.(authrules.Verifier)
	if verifier == nil {
		verifier = refVerifier{}
	}
	for _, id := range ids {
		e := r.ev(id)
		if e == nil || e.StateKey == nil {
			continue
		}
		needed := authrules.Needed(r.rv, e.Type, e.StateKey, e.Sender, e.Content)
		if r.rv.RoomIDFromCreateEvent {
			needed = append(needed, authrules.StateKey{Type: authrules.TypeCreate})
		}
		auth, right := authrules.StateMap{}, authrules.StateMap{}
		own := r.authEvents(e)
		for _, k := range needed {
			if sid, ok := state[k]; ok {
				if se := r.ev(sid); se != nil {
					auth[k], right[k] = se, se
					continue
				}
			}
			// Not in the state: "the appropriate state event from the
			// event's auth_events is used if the auth event is not
			// rejected".
			for _, a := range own {
				if a.StateKey != nil && a.Type == k.Type && *a.StateKey == k.StateKey {
					right[k] = a
					if r.opt.gmsl&gmslAuthFallbackSelf != 0 {
						auth[authrules.StateKey{Type: e.Type, StateKey: *e.StateKey}] = e
					} else {
						auth[k] = a
					}
				}
			}
		}
		allowed := authrules.CheckWith(e, auth, verifier) == nil
		if r.opt.fallbackFlips != nil && allowed != (authrules.CheckWith(e, right, verifier) == nil) {
			*r.opt.fallbackFlips++
		}
		if allowed {
			state[authrules.StateKey{Type: e.Type, StateKey: *e.StateKey}] = id
		}
	}
	return state
}

// refVerifier takes events as signed by the authorising server and refuses
// third-party invites.
type refVerifier struct{}

func (refVerifier) EventSignedBy(*event.PDU, string) bool                 { return true }
func (refVerifier) ThirdPartyInviteSigned(json.RawMessage, []string) bool { return false }
