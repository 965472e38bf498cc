package sync

import "encoding/json"

// Filter is the part of the spec's sync Filter that /sync applies.
type Filter struct {
	AccountData EventFilter `json:"account_data"`
	Presence    EventFilter `json:"presence"`
	Room        RoomFilter  `json:"room"`
}

// RoomFilter selects rooms and what of them is sent.
type RoomFilter struct {
	Rooms        *[]string       `json:"rooms"`
	NotRooms     []string        `json:"not_rooms"`
	IncludeLeave bool            `json:"include_leave"`
	Timeline     RoomEventFilter `json:"timeline"`
	State        RoomEventFilter `json:"state"`
	Ephemeral    RoomEventFilter `json:"ephemeral"`
	AccountData  RoomEventFilter `json:"account_data"`
}

// EventFilter filters non-room events.
type EventFilter struct {
	Limit      *int      `json:"limit"`
	Types      *[]string `json:"types"`
	NotTypes   []string  `json:"not_types"`
	Senders    *[]string `json:"senders"`
	NotSenders []string  `json:"not_senders"`
}

// RoomEventFilter filters room events.
type RoomEventFilter struct {
	EventFilter
	LazyLoadMembers         bool      `json:"lazy_load_members"`
	IncludeRedundantMembers bool      `json:"include_redundant_members"`
	Rooms                   *[]string `json:"rooms"`
	NotRooms                []string  `json:"not_rooms"`
	ContainsURL             *bool     `json:"contains_url"`
}

// DefaultTimelineLimit is Synapse's default when a filter sets none.
const DefaultTimelineLimit = 10

// MaxTimelineLimit caps what a filter may ask for.
const MaxTimelineLimit = 500

func (f *EventFilter) matchType(t string) bool {
	for _, nt := range f.NotTypes {
		if globMatch(nt, t) {
			return false
		}
	}
	if f.Types == nil {
		return true
	}
	for _, tt := range *f.Types {
		if globMatch(tt, t) {
			return true
		}
	}
	return false
}

func (f *EventFilter) matchSender(s string) bool {
	for _, ns := range f.NotSenders {
		if ns == s {
			return false
		}
	}
	if f.Senders == nil {
		return true
	}
	for _, ss := range *f.Senders {
		if ss == s {
			return true
		}
	}
	return false
}

// Match reports whether an event of type t from sender passes the filter.
func (f *EventFilter) Match(t, sender string) bool { return f.matchType(t) && f.matchSender(sender) }

func (f *RoomFilter) matchRoom(roomID string) bool {
	for _, r := range f.NotRooms {
		if r == roomID {
			return false
		}
	}
	if f.Rooms == nil {
		return true
	}
	for _, r := range *f.Rooms {
		if r == roomID {
			return true
		}
	}
	return false
}

// globMatch matches the spec's filter wildcards: "*" matches any sequence.
// Greedy matching with one backtrack point keeps it O(len(pattern)*len(s)).
func globMatch(pattern, s string) bool {
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

func (f *Filter) timelineLimit() int {
	if l := f.Room.Timeline.Limit; l != nil && *l >= 0 {
		return min(*l, MaxTimelineLimit)
	}
	return DefaultTimelineLimit
}

// ParseFilter reads a filter definition.
func ParseFilter(raw []byte) (*Filter, error) {
	f := &Filter{}
	if len(raw) == 0 {
		return f, nil
	}
	if err := json.Unmarshal(raw, f); err != nil {
		return nil, err
	}
	return f, nil
}
