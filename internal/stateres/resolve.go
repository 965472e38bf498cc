package stateres

import (
	"errors"

	"conclave/internal/authrules"
	"conclave/internal/event"
)

// StateMap maps (type, state_key) to an event ID.
type StateMap = map[authrules.StateKey]string

// Loader gives events by ID: every event named in the state sets and every
// event in their auth chains.
type Loader interface {
	// Event returns the event; rejected reports that it was rejected (never
	// used by resolution); ok is false when the event is unknown (resolution
	// then treats it as absent, never panics).
	Event(id string) (ev *event.PDU, rejected bool, ok bool)
}

// MaxEvents caps the number of distinct events one resolution may load
// (state set values and their auth chains). A room whose auth graph is
// larger cannot be resolved by this package and gets ErrTooManyEvents.
const MaxEvents = 100_000

var (
	// ErrTooManyEvents: the state sets and their auth chains hold more than
	// MaxEvents events.
	ErrTooManyEvents = errors.New("stateres: more events than a resolution may visit")
	// ErrUnsupportedRoomVersion: the room version has no state resolution
	// this package implements (nil, or an unknown algorithm).
	ErrUnsupportedRoomVersion = errors.New("stateres: unsupported state resolution algorithm")
)

// Resolve resolves the state sets (the states after each forward extremity /
// prev event) per rv.StateRes: 1 for state resolution v1 (v1.go), 2 for
// state resolution v2, 21 for v2.1. The
// result is a new map; the sets are not modified. With no sets the result is
// empty; with one set, or sets that do not conflict, it is their common
// state. The result does not depend on the order of the sets.
func Resolve(rv *event.RoomVersion, sets []StateMap, load Loader) (StateMap, error) {
	return resolve(rv, sets, load, MaxEvents)
}

// resolver holds one resolution. Its fields are indexes into nodes.
type resolver struct {
	rv        *event.RoomVersion
	load      Loader
	verifier  authrules.Verifier
	v21       bool
	maxEvents int
	err       error

	nodes []node
	index map[string]int32
	edges []int32
	stamp uint32
	stack []int32
	// createRoom and createID: the v12 create event ID of the last room ID
	// seen, so it is not rebuilt for every event.
	createRoom, createID string

	base           StateMap // the first set: with conflictedKeys, the unconflicted state map
	conflictedKeys map[authrules.StateKey]struct{}
	// unconflictedNodes: the unconflicted events, loaded only when an auth
	// chain walk needs them.
	unconflictedNodes []int32
	conflictedNodes   []int32

	// state is the partially resolved state of the iterative auth checks
	// over base (v2) or over nothing (v2.1): the events applied so far.
	state  map[authrules.StateKey]int32
	getter authState
	plMemo map[int32]*authrules.PowerLevels
}

func resolve(rv *event.RoomVersion, sets []StateMap, load Loader, maxEvents int) (StateMap, error) {
	if rv != nil && rv.StateRes == 1 {
		return resolveV1(rv, sets, load, maxEvents)
	}
	if rv == nil || (rv.StateRes != 2 && rv.StateRes != 21) {
		return nil, ErrUnsupportedRoomVersion
	}
	if len(sets) == 0 {
		return StateMap{}, nil
	}
	r := &resolver{rv: rv, load: load, v21: rv.StateRes == 21, maxEvents: maxEvents, base: sets[0]}
	r.separate(sets)
	if len(r.conflictedKeys) == 0 {
		out := make(StateMap, len(sets[0]))
		for k, v := range sets[0] {
			out[k] = v
		}
		return out, nil
	}
	if v, ok := load.(authrules.Verifier); ok {
		r.verifier = v
	} else {
		r.verifier = defaultVerifier{}
	}
	r.index = make(map[string]int32, 64)
	r.state = make(map[authrules.StateKey]int32, 2*len(r.conflictedKeys))
	r.getter.r = r
	if err := r.run(sets); err != nil {
		return nil, err
	}
	// Step 5: "Update the result by replacing any event with the event with
	// the same key from the unconflicted state map."
	out := make(StateMap, len(sets[0])+len(r.state))
	for k, v := range sets[0] {
		if _, c := r.conflictedKeys[k]; !c {
			out[k] = v
		}
	}
	for k, i := range r.state {
		if _, unc := out[k]; !unc {
			out[k] = r.nodes[i].id
		}
	}
	return out, nil
}

// separate finds the conflicted keys: "If a given key K is present in every
// S_i with the same value V in each state map, then the pair (K, V) belongs
// to the unconflicted state map. Otherwise, V belongs to the conflicted state
// set." A key missing from one set is therefore conflicted.
func (r *resolver) separate(sets []StateMap) {
	first := sets[0]
	for k, v := range first {
		for _, s := range sets[1:] {
			if w, ok := s[k]; !ok || w != v {
				r.addConflictedKey(k)
				break
			}
		}
	}
	for _, s := range sets[1:] {
		for k := range s {
			if _, ok := first[k]; !ok {
				r.addConflictedKey(k)
			}
		}
	}
}

func (r *resolver) addConflictedKey(k authrules.StateKey) {
	if r.conflictedKeys == nil {
		r.conflictedKeys = make(map[authrules.StateKey]struct{})
	}
	r.conflictedKeys[k] = struct{}{}
}

// unconflicted returns the unconflicted value of a key.
func (r *resolver) unconflicted(k authrules.StateKey) (string, bool) {
	if _, c := r.conflictedKeys[k]; c {
		return "", false
	}
	id, ok := r.base[k]
	return id, ok
}

func (r *resolver) run(sets []StateMap) error {
	full := r.fullConflictedSet(sets)
	if r.err != nil {
		return r.err
	}
	return r.order(full)
}

// fullConflictedSet returns the conflicted state set ∪ the auth difference
// (∪ the conflicted state subgraph for v2.1), known and accepted events only.
func (r *resolver) fullConflictedSet(sets []StateMap) []int32 {
	// The conflicted state set, as nodes.
	for k := range r.conflictedKeys {
		for _, s := range sets {
			id, ok := s[k]
			if !ok {
				continue
			}
			i := r.get(id)
			if i < 0 {
				return nil
			}
			if n := &r.nodes[i]; !n.conflict && n.usable() {
				n.conflict = true
				r.conflictedNodes = append(r.conflictedNodes, i)
			}
		}
	}
	for k, id := range r.base {
		if _, c := r.conflictedKeys[k]; c {
			continue
		}
		i := r.get(id)
		if i < 0 {
			return nil
		}
		r.unconflictedNodes = append(r.unconflictedNodes, i)
	}

	// The full conflicted set: conflicted state set ∪ auth difference
	// (∪ conflicted state subgraph for v2.1).
	full := make([]int32, 0, 2*len(r.conflictedNodes))
	addFull := func(list []int32) {
		for _, i := range list {
			if n := &r.nodes[i]; !n.inFull && n.usable() {
				n.inFull = true
				full = append(full, i)
			}
		}
	}
	addFull(r.conflictedNodes)
	addFull(r.authDifference(sets))
	if r.err != nil {
		return nil
	}
	if r.v21 {
		addFull(r.conflictedSubgraph())
	}
	return full
}

// order runs steps 1 to 4 on the full conflicted set.
func (r *resolver) order(full []int32) error {

	// Step 1: the power events of the full conflicted set, and the events
	// of their auth chains that are in the full conflicted set, in reverse
	// topological power ordering.
	var powerEvents []int32
	for _, i := range full {
		if isPowerEvent(r.nodes[i].ev) {
			r.nodes[i].inPower = true
			powerEvents = append(powerEvents, i)
		}
	}
	r.newWalk()
	r.walk(powerEvents, func(i int32) bool {
		if n := &r.nodes[i]; n.inFull {
			n.inPower = true
		}
		return true
	})
	if r.err != nil {
		return r.err
	}
	var x, rest []int32
	for _, i := range full {
		if r.nodes[i].inPower {
			x = append(x, i)
		} else {
			rest = append(rest, i)
		}
	}
	x = r.powerOrder(x)
	if r.err != nil {
		return r.err
	}

	// Step 2: iterative auth checks from the unconflicted state map (v2) or
	// from an empty state (v2.1; the unconflicted state is then only
	// re-applied in step 5).
	r.iterate(x)

	// Step 3: the other events, in mainline order of the resolved power
	// levels.
	rest = r.mainlineOrder(rest)

	// Step 4: iterative auth checks on the partially resolved state.
	r.iterate(rest)
	return r.err
}

// isPowerEvent: "A power event is a state event with type
// m.room.power_levels or m.room.join_rules, or a state event with type
// m.room.member where the membership is leave or ban and the sender does not
// match the state_key."
func isPowerEvent(ev *event.PDU) bool {
	if ev == nil || ev.StateKey == nil {
		return false
	}
	switch ev.Type {
	case authrules.TypePowerLevels, authrules.TypeJoinRules:
		return *ev.StateKey == ""
	case authrules.TypeMember:
		if *ev.StateKey == ev.Sender {
			return false
		}
		m, err := authrules.Membership(ev)
		return err == nil && (m == authrules.MembershipLeave || m == authrules.MembershipBan)
	}
	return false
}

// iterate applies the iterative auth checks algorithm to the events in
// order, on r.state.
func (r *resolver) iterate(order []int32) {
	for _, i := range order {
		if r.err != nil {
			return
		}
		ev := r.nodes[i].ev
		if ev == nil || ev.StateKey == nil {
			continue
		}
		r.getter.cur = i
		if authrules.CheckWith(ev, &r.getter, r.verifier) != nil {
			continue
		}
		r.state[authrules.StateKey{Type: ev.Type, StateKey: *ev.StateKey}] = i
	}
}

// partial returns the event of a key in the partially resolved state (the
// events applied so far, over the unconflicted state map for v2), or -1.
func (r *resolver) partial(k authrules.StateKey) int32 {
	if i, ok := r.state[k]; ok {
		return i
	}
	if r.v21 {
		return -1
	}
	id, ok := r.unconflicted(k)
	if !ok {
		return -1
	}
	return r.get(id)
}

// authState is the auth state of the event being checked by the iterative
// auth checks: the partially resolved state, and "if a (event_type,
// state_key) key that is required for checking the authorisation rules is
// not present in the state, then the appropriate state event from the
// event's auth_events is used if the auth event is not rejected". A key whose
// event in the state is unknown or rejected counts as not present.
type authState struct {
	r   *resolver
	cur int32
}

func (a *authState) StateEvent(eventType, stateKey string) *event.PDU {
	r := a.r
	if i := r.partial(authrules.StateKey{Type: eventType, StateKey: stateKey}); i >= 0 {
		if ev := r.nodes[i].ev; ev != nil {
			return ev
		}
	}
	if i := r.authOf(a.cur, eventType, stateKey); i >= 0 {
		return r.nodes[i].ev
	}
	return nil
}
