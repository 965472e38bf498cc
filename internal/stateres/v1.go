package stateres

import (
	"bytes"
	"crypto/sha1"
	"slices"

	"conclave/internal/authrules"
	"conclave/internal/event"
)

// State resolution v1, the original algorithm (spec: "Room Version 1",
// "State resolution"). It has none of v2's auth chain work: each conflicted
// key is decided among its own values, ordered by depth and the SHA-1 of the
// event ID, with auth checks against the state resolved so far, R:
//
//   - R starts as "the union of the states to be resolved, excluding any
//     conflicting events"; "a conflict occurs between states where those
//     states have different event_ids for the same (event_type, state_key)",
//     so, unlike v2, a key present in some sets only is not conflicted.
//   - m.room.power_levels, then m.room.join_rules, then m.room.member
//     conflicts are each resolved as an "auth block": the values sorted "by
//     ascending depth then descending sha1(event_id)", the first taken, each
//     next one taken while it "would be allowed by the authorization rules
//     for a room in state R" (with the block's current pick in R), stopping
//     at the first refused. The results of one type join R only once every
//     key of that type is resolved, so the order of the keys does not matter.
//   - Every other conflict: "the event with the highest depth and lowest
//     sha1(event_id) that passes authentication in R"; when none passes, the
//     lowest (depth, highest SHA-1) one, as Synapse (synapse/state/v1.py,
//     _resolve_normal_events) and gomatrixserverlib do.
//
// Where the spec is silent this follows Synapse, the reference
// implementation (synapse/state/v1.py), so rooms shared with it resolve the
// same:
//
//   - "m.room.join_rules events" and "m.room.member events" are every key of
//     those types; an m.room.create or m.room.third_party_invite conflict is
//     an ordinary one (gomatrixserverlib resolves both as auth blocks, create
//     first and third-party invites before members).
//   - Unknown and rejected events are absent: a conflicted key keeps its
//     accepted values, and one left with a single value takes it (with none,
//     the key is left out of the result); they never serve as auth events.
//     Auth events come from the unconflicted state and the keys resolved by
//     earlier steps only, so a key whose conflict collapsed to one event that
//     way is in the result but not in R (Synapse computes the auth events
//     before dropping the unknown values).
//   - Only the values of conflicted keys and the unconflicted events the auth
//     checks ask for are loaded: at most MaxEvents of them.
type v1resolver struct {
	rv           *event.RoomVersion
	load         Loader
	verifier     authrules.Verifier
	maxEvents    int
	loaded       map[string]*event.PDU // nil: unknown or rejected
	err          error
	unconflicted StateMap
	// resolved holds the keys decided by the auth blocks so far: the part of
	// R over the unconflicted state.
	resolved map[authrules.StateKey]*event.PDU
	// check is authrules.CheckWith (tests emulate another server's rules).
	check func(*event.PDU, authrules.StateGetter, authrules.Verifier) error
}

func resolveV1(rv *event.RoomVersion, sets []StateMap, load Loader, maxEvents int) (StateMap, error) {
	r := &v1resolver{rv: rv, load: load, maxEvents: maxEvents, check: authrules.CheckWith}
	return r.resolve(sets)
}

func (r *v1resolver) resolve(sets []StateMap) (StateMap, error) {
	out := StateMap{}
	if len(sets) == 0 {
		return out, nil
	}
	// Separate, as Synapse's _seperate: the first value seen for a key is
	// unconflicted until another set gives it a different one.
	var conflicted map[authrules.StateKey][]string
	for _, s := range sets {
		for k, v := range s {
			if list, ok := conflicted[k]; ok {
				if !slices.Contains(list, v) {
					conflicted[k] = append(list, v)
				}
				continue
			}
			u, ok := out[k]
			if !ok {
				out[k] = v
				continue
			}
			if u != v {
				if conflicted == nil {
					conflicted = make(map[authrules.StateKey][]string)
				}
				conflicted[k] = []string{u, v}
				delete(out, k)
			}
		}
	}
	if len(conflicted) == 0 {
		return out, nil
	}
	r.loaded = make(map[string]*event.PDU)
	r.unconflicted = make(StateMap, len(out))
	r.resolved = make(map[authrules.StateKey]*event.PDU)
	for k, v := range out {
		r.unconflicted[k] = v
	}
	if v, ok := r.load.(authrules.Verifier); ok {
		r.verifier = v
	} else {
		r.verifier = defaultVerifier{}
	}

	// The accepted values of each conflicted key, grouped by the step that
	// decides them.
	var power, joinRules, members, others []block
	for k, ids := range conflicted {
		var evs []*event.PDU
		for _, id := range ids {
			// A value that is not a state event (hostile or corrupt sets)
			// counts as unknown.
			if ev := r.get(id); ev != nil && ev.StateKey != nil {
				evs = append(evs, ev)
			}
		}
		if r.err != nil {
			return nil, r.err
		}
		switch len(evs) {
		case 0:
			continue
		case 1:
			out[k] = evs[0].EventID
			continue
		}
		b := block{key: k, events: evs}
		switch {
		case k.Type == authrules.TypePowerLevels && k.StateKey == "":
			power = append(power, b)
		case k.Type == authrules.TypeJoinRules:
			joinRules = append(joinRules, b)
		case k.Type == authrules.TypeMember:
			members = append(members, b)
		default:
			others = append(others, b)
		}
	}

	for _, step := range [][]block{power, joinRules, members} {
		picks := make([]*event.PDU, len(step))
		for i, b := range step {
			picks[i] = r.resolveAuthBlock(b)
		}
		if r.err != nil {
			return nil, r.err
		}
		for i, b := range step {
			r.resolved[b.key] = picks[i]
			out[b.key] = picks[i].EventID
		}
	}
	for _, b := range others {
		out[b.key] = r.resolveNormal(b).EventID
	}
	if r.err != nil {
		return nil, r.err
	}
	return out, nil
}

// block is the accepted values of one conflicted key.
type block struct {
	key    authrules.StateKey
	events []*event.PDU
}

// get loads an event once; nil when it is unknown or rejected, or when the
// cap on events is reached (r.err is then set).
func (r *v1resolver) get(id string) *event.PDU {
	if ev, ok := r.loaded[id]; ok {
		return ev
	}
	if len(r.loaded) >= r.maxEvents {
		r.err = ErrTooManyEvents
		return nil
	}
	ev, rejected, ok := r.load.Event(id)
	if !ok || rejected {
		ev = nil
	}
	r.loaded[id] = ev
	return ev
}

// v1Less orders a block "by ascending depth then descending sha1(event_id)".
// Equal keys mean the same event ID (a block holds each ID once).
func v1Less(a, b *v1Entry) int {
	if a.ev.Depth != b.ev.Depth {
		if a.ev.Depth < b.ev.Depth {
			return -1
		}
		return 1
	}
	return -bytes.Compare(a.sum[:], b.sum[:])
}

type v1Entry struct {
	ev  *event.PDU
	sum [sha1.Size]byte
}

// sorted returns the block's events in ascending (depth, descending SHA-1).
func sorted(b block) []*event.PDU {
	entries := make([]v1Entry, len(b.events))
	for i, ev := range b.events {
		entries[i] = v1Entry{ev: ev, sum: sha1.Sum([]byte(ev.EventID))}
	}
	slices.SortFunc(entries, func(x, y v1Entry) int { return v1Less(&x, &y) })
	out := make([]*event.PDU, len(entries))
	for i := range entries {
		out[i] = entries[i].ev
	}
	return out
}

// resolveAuthBlock decides a power levels, join rules or member conflict.
func (r *v1resolver) resolveAuthBlock(b block) *event.PDU {
	evs := sorted(b)
	pick := evs[0]
	st := v1State{r: r, key: b.key}
	for _, ev := range evs[1:] {
		st.pick = pick
		if r.check(ev, &st, r.verifier) != nil {
			break
		}
		pick = ev
	}
	return pick
}

// resolveNormal decides any other conflict: the newest value that passes
// the auth checks in R, else the oldest.
func (r *v1resolver) resolveNormal(b block) *event.PDU {
	evs := sorted(b)
	st := v1State{r: r}
	for i := len(evs) - 1; i >= 0; i-- {
		if r.check(evs[i], &st, r.verifier) == nil {
			return evs[i]
		}
	}
	return evs[0]
}

// v1State is R for an auth check: the block's current pick for its key,
// the keys resolved by the earlier steps, then the unconflicted state.
type v1State struct {
	r    *v1resolver
	key  authrules.StateKey
	pick *event.PDU
}

func (s *v1State) StateEvent(eventType, stateKey string) *event.PDU {
	k := authrules.StateKey{Type: eventType, StateKey: stateKey}
	if s.pick != nil && k == s.key {
		return s.pick
	}
	if ev, ok := s.r.resolved[k]; ok {
		return ev
	}
	if id, ok := s.r.unconflicted[k]; ok {
		return s.r.get(id)
	}
	return nil
}
