package stateres

import (
	"conclave/internal/authrules"
)

// quirks switch on known deviations of gomatrixserverlib from the spec. They
// exist only so that the oracle test can tell a disagreement explained by one
// of them from a bug here; Resolve never sets them. Each is described where
// the oracle test documents it (oracle_test.go).
type quirks uint8

const (
	// quirkAuthFallbackSelf: when a key needed to authorise an event is not
	// in the partial state, gomatrixserverlib adds the event itself to the
	// auth state instead of its auth event with that key.
	quirkAuthFallbackSelf quirks = 1 << iota
	// quirkNoPLPowerZero: a sender whose auth events hold no power levels
	// has power 0, even the creator (spec: 100 before v12).
	quirkNoPLPowerZero
	// quirkReverseKahn: the topological sort runs from the latest events,
	// taking the greatest candidate and prepending it, which is not always
	// the lexicographically smallest ordering.
	quirkReverseKahn
	// quirkMainlineSteps: events whose power levels chain never meets the
	// mainline get position 0 (the oldest mainline event's) instead of
	// infinity, and equal positions are ordered by the number of power
	// levels events walked before meeting the mainline, then by
	// origin_server_ts and event ID; the spec has no such tie-break.
	quirkMainlineSteps
)

// gmslAuthState emulates quirkAuthFallbackSelf: the auth state
// gomatrixserverlib builds, in its order (create, join rules, power levels,
// members, third-party invites), each missing key making the event itself an
// entry.
func (r *resolver) gmslAuthState(i int32) authrules.StateMap {
	ev := r.nodes[i].ev
	m := authrules.StateMap{}
	needed := authrules.Needed(r.rv, ev.Type, ev.StateKey, ev.Sender, ev.Content)
	keys := []authrules.StateKey{{Type: authrules.TypeCreate}}
	for _, t := range []string{authrules.TypeJoinRules, authrules.TypePowerLevels, authrules.TypeMember, authrules.TypeThirdPartyInvite} {
		for _, k := range needed {
			if k.Type == t {
				keys = append(keys, k)
			}
		}
	}
	for _, k := range keys {
		if j := r.partial(k); j >= 0 && r.nodes[j].ev != nil {
			m[k] = r.nodes[j].ev
		} else if r.authOf(i, k.Type, k.StateKey) >= 0 {
			m[authrules.StateKey{Type: ev.Type, StateKey: *ev.StateKey}] = ev
		}
	}
	return m
}

// reverseKahn is quirkReverseKahn's ordering.
func (r *resolver) reverseKahn(xs []int32) []int32 {
	in := make(map[int32]bool, len(xs))
	for _, i := range xs {
		in[i] = true
		r.nodes[i].power = r.senderPower(i)
	}
	cited := map[int32]int{}
	for _, i := range xs {
		for _, a := range r.auth(i) {
			if in[a] {
				cited[a]++
			}
		}
	}
	h := nodeHeap{less: func(a, b int32) bool { return r.powerLess(b, a) }}
	for _, i := range xs {
		if cited[i] == 0 {
			h.push(i)
		}
	}
	out := make([]int32, len(xs))
	n := len(xs)
	for h.len() > 0 {
		i := h.pop()
		n--
		out[n] = i
		for _, a := range r.auth(i) {
			if in[a] {
				cited[a]--
				if cited[a] == 0 {
					h.push(a)
				}
			}
		}
	}
	return out[n:]
}

// gmslMainlineKey is quirkMainlineSteps' sort key of event e: its position
// counted from the oldest mainline event (0 when not found) and the steps.
func (r *resolver) gmslMainlineKey(e int32, mainlineLen int32) (pos, steps int32) {
	p := r.authOf(e, authrules.TypePowerLevels, "")
	for n := 0; p >= 0 && n < len(r.nodes); n++ {
		if mp := r.nodes[p].mainPos; mp >= 0 && mp != infinity && r.onMainline(p) {
			return mainlineLen - 1 - mp, steps
		}
		steps++
		p = r.authOf(p, authrules.TypePowerLevels, "")
	}
	return 0, steps
}
