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
}

// merge adds c's wishes to m.
func (m *config) merge(c *RoomConfig) {
	for _, p := range c.RequiredState {
		pair := [2]string{p[0], p[1]}
		if !slices.Contains(m.RequiredState, pair) {
			m.RequiredState = append(m.RequiredState, pair)
		}
	}
	m.TimelineLimit = max(m.TimelineLimit, c.TimelineLimit)
}

// fingerprint identifies the config (order of pairs aside) in the
// connection's per-room rows; never 0, which means "none".
func (m *config) fingerprint() int64 {
	pairs := slices.Clone(m.RequiredState)
	slices.SortFunc(pairs, func(a, b [2]string) int {
		if c := strings.Compare(a[0], b[0]); c != 0 {
			return c
		}
		return strings.Compare(a[1], b[1])
	})
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
	fp := int64(h.Sum64() >> 1)
	if fp == 0 {
		fp = 1
	}
	return fp
}

// stateSpec is required_state resolved for one user: which (type, key)
// pairs of a room's state to send.
type stateSpec struct {
	all     bool                       // ["*", "*"]
	byType  map[string]map[string]bool // type → keys; a "*" key: every key
	anyType map[string]bool            // ["*", key]: that key of any type
	lazy    bool                       // ["m.room.member", "$LAZY"]
}

// newStateSpec resolves pairs for userID: $ME is the user; types and other
// keys are opaque strings matched exactly.
func newStateSpec(pairs [][2]string, userID string) *stateSpec {
	s := &stateSpec{byType: map[string]map[string]bool{}, anyType: map[string]bool{}}
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
			s.anyType[key] = true
		default:
			if s.byType[typ] == nil {
				s.byType[typ] = map[string]bool{}
			}
			s.byType[typ][key] = true
		}
	}
	return s
}

// match reports whether the state event (typ, key) is required; senders
// are the timeline's senders ($LAZY members).
func (s *stateSpec) match(typ, key string, senders map[string]bool) bool {
	if s.all || s.anyType[key] {
		return true
	}
	if keys := s.byType[typ]; keys != nil && (keys[wildcard] || keys[key]) {
		return true
	}
	return s.lazy && typ == memberType && senders[key]
}

// empty reports that nothing at all is required.
func (s *stateSpec) empty() bool {
	return !s.all && !s.lazy && len(s.byType) == 0 && len(s.anyType) == 0
}
