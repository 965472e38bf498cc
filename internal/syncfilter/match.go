package syncfilter

import (
	"encoding/json"
	"strings"
)

// Match reports whether an event (or presence update, or account data item)
// of type typ sent by sender passes the filter. not_senders and not_types
// win over senders and types. A nil filter matches everything.
func (f *EventFilter) Match(typ, sender string) bool {
	if f == nil {
		return true
	}
	if contains(f.NotSenders, sender) || matchesAnyType(f.NotTypes, typ) {
		return false
	}
	if f.Senders != nil && !contains(f.Senders, sender) {
		return false
	}
	if f.Types != nil && !matchesAnyType(f.Types, typ) {
		return false
	}
	return true
}

// MatchType reports whether typ passes the type lists (for items without a
// sender, such as account data).
func (f *EventFilter) MatchType(typ string) bool {
	if f == nil {
		return true
	}
	if matchesAnyType(f.NotTypes, typ) {
		return false
	}
	return f.Types == nil || matchesAnyType(f.Types, typ)
}

// LimitOr returns the filter's limit, def when it has none, and at most max.
func (f *EventFilter) LimitOr(def, max int) int {
	if f == nil || f.Limit == nil {
		return min(def, max)
	}
	return min(*f.Limit, max)
}

// Match reports whether an event in roomID passes the filter; containsURL
// says whether its content.url is a string (see ContainsURL).
func (f *RoomEventFilter) Match(roomID, typ, sender string, containsURL bool) bool {
	if f == nil {
		return true
	}
	if !f.MatchRoom(roomID) || !f.EventFilter.Match(typ, sender) {
		return false
	}
	if f.ContainsURL != nil && *f.ContainsURL != containsURL {
		return false
	}
	return true
}

// MatchRoom applies rooms/not_rooms only.
func (f *RoomEventFilter) MatchRoom(roomID string) bool {
	if f == nil {
		return true
	}
	return matchRoom(f.Rooms, f.NotRooms, roomID)
}

// LimitOr is EventFilter.LimitOr, nil-safe on the outer filter.
func (f *RoomEventFilter) LimitOr(def, max int) int {
	if f == nil {
		return min(def, max)
	}
	return f.EventFilter.LimitOr(def, max)
}

// MatchRoom reports whether /sync includes roomID at all.
func (f *RoomFilter) MatchRoom(roomID string) bool {
	if f == nil {
		return true
	}
	return matchRoom(f.Rooms, f.NotRooms, roomID)
}

func matchRoom(rooms, notRooms []string, roomID string) bool {
	if contains(notRooms, roomID) {
		return false
	}
	return rooms == nil || contains(rooms, roomID)
}

// Accessors that are safe on nil filters, for /sync.

func (f *Filter) room() *RoomFilter {
	if f == nil {
		return nil
	}
	return f.Room
}

// RoomFilter returns the room filter (nil: everything).
func (f *Filter) RoomFilter() *RoomFilter { return f.room() }

// Timeline returns the room timeline filter (nil: everything).
func (f *Filter) Timeline() *RoomEventFilter {
	if r := f.room(); r != nil {
		return r.Timeline
	}
	return nil
}

// State returns the room state filter (nil: everything).
func (f *Filter) State() *RoomEventFilter {
	if r := f.room(); r != nil {
		return r.State
	}
	return nil
}

// Ephemeral returns the room ephemeral filter (nil: everything).
func (f *Filter) Ephemeral() *RoomEventFilter {
	if r := f.room(); r != nil {
		return r.Ephemeral
	}
	return nil
}

// RoomAccountData returns the room account data filter (nil: everything).
func (f *Filter) RoomAccountData() *RoomEventFilter {
	if r := f.room(); r != nil {
		return r.AccountData
	}
	return nil
}

// PresenceFilter returns the presence filter (nil: everything).
func (f *Filter) PresenceFilter() *EventFilter {
	if f == nil {
		return nil
	}
	return f.Presence
}

// AccountDataFilter returns the global account data filter (nil: everything).
func (f *Filter) AccountDataFilter() *EventFilter {
	if f == nil {
		return nil
	}
	return f.AccountData
}

// IncludeLeave reports room.include_leave.
func (f *Filter) IncludeLeave() bool {
	r := f.room()
	return r != nil && r.IncludeLeave
}

// LazyLoadMembers reports room.state.lazy_load_members (spec: "Lazy-loading
// room members": the flag lives on the state filter for /sync).
func (f *Filter) LazyLoadMembers() bool {
	s := f.State()
	return s != nil && s.LazyLoadMembers
}

// IncludeRedundantMembers reports room.state.include_redundant_members; it
// only has an effect with lazy loading.
func (f *Filter) IncludeRedundantMembers() bool {
	s := f.State()
	return s != nil && s.LazyLoadMembers && s.IncludeRedundantMembers
}

// ContainsURL reports whether an event content has a string "url" field, the
// property contains_url filters on.
func ContainsURL(content json.RawMessage) bool {
	var c struct {
		URL json.RawMessage `json:"url"`
	}
	// A valid JSON value starting with a quote is a string.
	return json.Unmarshal(content, &c) == nil && len(c.URL) > 0 && c.URL[0] == '"'
}

func contains(list []string, v string) bool {
	for _, s := range list {
		if s == v {
			return true
		}
	}
	return false
}

func matchesAnyType(patterns []string, typ string) bool {
	for _, p := range patterns {
		if MatchWildcard(p, typ) {
			return true
		}
	}
	return false
}

// MatchWildcard matches s against pattern, where * stands for any sequence
// of characters (spec: "A '*' can be used as a wildcard to match any
// sequence of characters"). It runs in O(len(pattern)·len(s)) at worst.
func MatchWildcard(pattern, s string) bool {
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case p < len(pattern) && pattern[p] == s[i]:
			p++
			i++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// PrefixPatternsOnly reports whether every pattern is a literal or ends in
// its only "*": the shapes a store can match with an equality or prefix
// test. Others ("m.*.message") must be matched with Match after loading.
func PrefixPatternsOnly(patterns []string) bool {
	for _, p := range patterns {
		if i := strings.IndexByte(p, '*'); i >= 0 && i != len(p)-1 {
			return false
		}
	}
	return true
}
