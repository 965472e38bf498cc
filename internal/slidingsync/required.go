package slidingsync

import (
	"encoding/binary"
	"hash/fnv"
	"slices"
	"strings"
)

// Special state keys and types of required_state (MSC4186).
const (
	wildcard   = "*"
	stateMe    = "$ME"
	stateLazy  = "$LAZY"
	memberType = "m.room.member"
)

// config is what the client wants of one room, merged over every list and
// subscription it is in: the union of their required state and the largest
// timeline limit.
type config struct {
	RequiredState [][2]string `json:"r,omitempty"`
	TimelineLimit int         `json:"t,omitempty"`
	// Excluding: the stable encoding's required_state objects that have an
	// exclude (include minus exclude; they cannot be merged into pairs).
	Excluding []stateGroup `json:"x,omitempty"`
}

// stateGroup is one required_state with an exclude.
type stateGroup struct {
	Include [][2]string `json:"i,omitempty"`
	Exclude [][2]string `json:"e,omitempty"`
}

func pairsOf(ps [][]string) [][2]string {
	out := make([][2]string, 0, len(ps))
	for _, p := range ps {
		if pair := [2]string{p[0], p[1]}; !slices.Contains(out, pair) {
			out = append(out, pair)
		}
	}
	return out
}

// merge adds c's wishes to m.
func (m *config) merge(c *RoomConfig) {
	if len(c.exclude) > 0 {
		g := stateGroup{Exclude: pairsOf(c.exclude)}
		for _, p := range pairsOf(c.RequiredState) {
			if p == [2]string{memberType, stateLazy} {
				m.addPair(p) // lazy members are not excluded
			} else {
				g.Include = append(g.Include, p)
			}
		}
		if !slices.ContainsFunc(m.Excluding, func(h stateGroup) bool {
			return slices.Equal(h.Include, g.Include) && slices.Equal(h.Exclude, g.Exclude)
		}) {
			m.Excluding = append(m.Excluding, g)
		}
	} else {
		for _, p := range c.RequiredState {
			m.addPair([2]string{p[0], p[1]})
		}
	}
	m.TimelineLimit = max(m.TimelineLimit, c.TimelineLimit)
}

func (m *config) addPair(pair [2]string) {
	if !slices.Contains(m.RequiredState, pair) {
		m.RequiredState = append(m.RequiredState, pair)
	}
}

// fingerprint identifies the config (order of pairs aside) in the
// connection's per-room rows; never 0, which means "none".
func (m *config) fingerprint() int64 {
	pairs := sortedPairs(m.RequiredState)
	h := fnv.New64a()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(m.TimelineLimit))
	h.Write(n[:])
	for _, p := range pairs {
		h.Write([]byte(p[0]))
		h.Write([]byte{0})
		h.Write([]byte(p[1]))
		h.Write([]byte{0})
	}
	// Groups in a canonical order; none (every config of the unstable
	// encoding) adds nothing, so those fingerprints stay as they were.
	groups := make([]string, 0, len(m.Excluding))
	for _, g := range m.Excluding {
		var b strings.Builder
		for _, p := range sortedPairs(g.Include) {
			b.WriteString(p[0] + "\x00" + p[1] + "\x00")
		}
		b.WriteString("\x01")
		for _, p := range sortedPairs(g.Exclude) {
			b.WriteString(p[0] + "\x00" + p[1] + "\x00")
		}
		groups = append(groups, b.String())
	}
	slices.Sort(groups)
	for _, g := range groups {
		h.Write([]byte{2})
		h.Write([]byte(g))
	}
	fp := int64(h.Sum64() >> 1)
	if fp == 0 {
		fp = 1
	}
	return fp
}

func sortedPairs(ps [][2]string) [][2]string {
	pairs := slices.Clone(ps)
	slices.SortFunc(pairs, func(a, b [2]string) int {
		if c := strings.Compare(a[0], b[0]); c != 0 {
			return c
		}
		return strings.Compare(a[1], b[1])
	})
	return pairs
}

// stateSpec is required_state resolved for one user: which (type, key)
// pairs of a room's state to send.
type stateSpec struct {
	all     bool                       // ["*", "*"]
	typeAll map[string]bool            // [type, "*"]: every key of the type
	byType  map[string]map[string]bool // type → keys
	anyType map[string]bool            // ["*", key]: that key of any type
	lazy    bool                       // ["m.room.member", "$LAZY"]
	// excluding are the stable encoding's required_state objects with an
	// exclude, each kept apart: a state event they return is in its
	// include and not in its exclude (MSC4186 "Combining required_state",
	// approach a).
	excluding []excludingSpec
}

type excludingSpec struct{ include, exclude *stateSpec }

// literal marks a type or state key that is matched as itself even if it
// reads "*", "$ME" or "$LAZY": the stable encoding has no special strings
// (it says "any" by leaving a field out), so its values are carried so.
const literal = "\x00"

// lit returns x as a literal type or state key of a pair.
func lit(x string) string {
	if x == wildcard || x == stateMe || x == stateLazy || strings.HasPrefix(x, literal) {
		return literal + x
	}
	return x
}

func unlit(x string) string { return strings.TrimPrefix(x, literal) }

// newStateSpec resolves pairs for userID: $ME is the user; types and other
// keys are opaque strings matched exactly.
func newStateSpec(pairs [][2]string, userID string) *stateSpec {
	s := &stateSpec{byType: map[string]map[string]bool{}, anyType: map[string]bool{}, typeAll: map[string]bool{}}
	for _, p := range pairs {
		typ, key := p[0], p[1]
		if key == stateMe {
			key = userID
		}
		switch {
		case typ == wildcard && key == wildcard:
			s.all = true
		case typ == memberType && key == stateLazy:
			s.lazy = true
		case typ == wildcard:
			s.anyType[unlit(key)] = true
		case key == wildcard:
			s.typeAll[unlit(typ)] = true
		default:
			typ = unlit(typ)
			if s.byType[typ] == nil {
				s.byType[typ] = map[string]bool{}
			}
			s.byType[typ][unlit(key)] = true
		}
	}
	return s
}

// newConfigSpec resolves a room's merged config.
func newConfigSpec(c *config, userID string) *stateSpec {
	s := newStateSpec(c.RequiredState, userID)
	for _, g := range c.Excluding {
		s.excluding = append(s.excluding, excludingSpec{newStateSpec(g.Include, userID), newStateSpec(g.Exclude, userID)})
	}
	return s
}

// match reports whether the state event (typ, key) is required; senders
// are the timeline's senders ($LAZY members, which no exclude removes:
// MSC4186 "Lazy loaded memberships").
func (s *stateSpec) match(typ, key string, senders map[string]bool) bool {
	if s.all || s.anyType[key] || s.typeAll[typ] || s.byType[typ][key] {
		return true
	}
	if s.lazy && typ == memberType && senders[key] {
		return true
	}
	for _, g := range s.excluding {
		if g.include.match(typ, key, nil) && !g.exclude.match(typ, key, nil) {
			return true
		}
	}
	return false
}

// empty reports that nothing at all is required.
func (s *stateSpec) empty() bool {
	return !s.all && !s.lazy && len(s.byType) == 0 && len(s.anyType) == 0 && len(s.typeAll) == 0 && len(s.excluding) == 0
}
