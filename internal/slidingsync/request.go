package slidingsync

import (
	"encoding/json"
	"strings"
	"unicode/utf8"

	"conclave/internal/matrix"
)

// Request is one sliding sync request body, in the shape clients speak today
// (Synapse's unstable org.matrix.simplified_msc3575 endpoint; pos and
// timeout are query parameters there). Nothing in it is sticky: a client
// sends its whole view with every request.
type Request struct {
	ConnID            string                 `json:"conn_id"`
	Lists             map[string]*List       `json:"lists"`
	RoomSubscriptions map[string]*RoomConfig `json:"room_subscriptions"`
	Extensions        Extensions             `json:"extensions"`
}

// RoomConfig is what a client wants of each room of a list or subscription.
type RoomConfig struct {
	// RequiredState pairs [type, state_key]; "*" matches anything, a state
	// key "$ME" is the syncing user, ["m.room.member", "$LAZY"] the members
	// who sent events in the timeline sent.
	RequiredState [][]string `json:"required_state"`
	TimelineLimit int        `json:"timeline_limit"`
	// exclude: pairs a stable request's required_state leaves out of its
	// include (stable.go); the unstable encoding has none.
	exclude [][]string
}

// List is one sliding window over the user's rooms.
type List struct {
	RoomConfig
	// Ranges are inclusive index ranges into the list ordered by recency;
	// none (absent) means the whole list.
	Ranges  [][]int  `json:"ranges"`
	Filters *Filters `json:"filters"`
}

// Filters select the rooms of a list (MSC4186 "Filters"; all given must
// hold). Pointers: absent means "do not filter on it".
type Filters struct {
	IsDM         *bool     `json:"is_dm"`
	Spaces       []string  `json:"spaces"`
	IsEncrypted  *bool     `json:"is_encrypted"`
	IsInvite     *bool     `json:"is_invite"`
	RoomTypes    []*string `json:"room_types"`     // nil entry: rooms without a type
	NotRoomTypes []*string `json:"not_room_types"` // likewise
	RoomNameLike *string   `json:"room_name_like"`
	Tags         []string  `json:"tags"`
	NotTags      []string  `json:"not_tags"`
	roomTypesSet bool      // room_types was given (even empty)
}

// UnmarshalJSON notes whether room_types was present: [] matches nothing.
func (f *Filters) UnmarshalJSON(b []byte) error {
	type plain Filters
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	var keys map[string]json.RawMessage
	json.Unmarshal(b, &keys)
	_, p.roomTypesSet = keys["room_types"]
	*f = Filters(p)
	return nil
}

// Extensions are the optional parts of a response; each is on only when
// "enabled" is true.
type Extensions struct {
	ToDevice    *ToDeviceExt `json:"to_device"`
	E2EE        *Toggle      `json:"e2ee"`
	AccountData *ScopedExt   `json:"account_data"`
	Receipts    *ScopedExt   `json:"receipts"`
	Typing      *ScopedExt   `json:"typing"`
	// ThreadSubscriptions is MSC4308's extension, under its stable name or
	// its unstable one (answered under the name asked).
	ThreadSubscriptions         *ThreadSubsExt `json:"thread_subscriptions"`
	ThreadSubscriptionsUnstable *ThreadSubsExt `json:"io.element.msc4308.thread_subscriptions"`
}

// ThreadSubsExt is the thread_subscriptions extension: at most limit
// changes (100 by default).
type ThreadSubsExt struct {
	Toggle
	Limit *int `json:"limit"`
}

// Toggle is an extension with nothing but "enabled".
type Toggle struct {
	Enabled *bool `json:"enabled"`
}

func (t *Toggle) on() bool { return t != nil && t.Enabled != nil && *t.Enabled }

// ToDeviceExt is the to_device extension: its own position, "since".
type ToDeviceExt struct {
	Toggle
	Limit *int   `json:"limit"`
	Since string `json:"since"`
}

// ScopedExt is an extension about rooms: those of the named lists and room
// subscriptions ("*": all), all of both when absent.
type ScopedExt struct {
	Toggle
	Lists []string `json:"lists"`
	Rooms []string `json:"rooms"`
}

// Bounds on a request.
const (
	MaxLists             = 100
	MaxRangesPerList     = 100
	MaxSubscriptions     = 1000
	MaxRequiredState     = 100 // pairs per list or subscription
	MaxTimelineLimit     = 1000
	maxTimelineLoaded    = 500 // more is accepted but not loaded (like /sync's cap)
	maxIndex             = 1 << 30
	maxConnIDLength      = 200
	defaultToDeviceLimit = 100
)

func invalid(format string, args ...any) error {
	return matrix.InvalidParam(format, args...)
}

// Validate checks a request against the MSC's rules and this server's
// bounds: a bad request is refused whole with M_INVALID_PARAM.
func (r *Request) Validate() error {
	if len(r.ConnID) > maxConnIDLength || strings.ContainsFunc(r.ConnID, func(c rune) bool { return c < 0x20 || c == 0x7f }) || !utf8.ValidString(r.ConnID) {
		return invalid("conn_id must be at most %d characters, without control characters", maxConnIDLength)
	}
	if len(r.Lists) > MaxLists {
		return invalid("at most %d lists", MaxLists)
	}
	if len(r.RoomSubscriptions) > MaxSubscriptions {
		return invalid("at most %d room subscriptions", MaxSubscriptions)
	}
	for name, l := range r.Lists {
		if l == nil {
			return invalid("list %q must be an object", name)
		}
		if len(l.Ranges) > MaxRangesPerList {
			return invalid("list %q: at most %d ranges", name, MaxRangesPerList)
		}
		for _, rg := range l.Ranges {
			if len(rg) != 2 || rg[0] < 0 || rg[1] < rg[0] || rg[1] > maxIndex {
				return invalid("list %q: each range must be [start, end] with 0 <= start <= end", name)
			}
		}
		if err := l.RoomConfig.validate("list " + name); err != nil {
			return err
		}
	}
	for id, c := range r.RoomSubscriptions {
		if c == nil {
			return invalid("room subscription %q must be an object", id)
		}
		if !strings.HasPrefix(id, "!") {
			return invalid("room subscription %q is not a room ID", id)
		}
		if err := c.validate("room subscription " + id); err != nil {
			return err
		}
	}
	if td := r.Extensions.ToDevice; td != nil && td.Limit != nil && *td.Limit < 0 {
		return invalid("to_device limit must not be negative")
	}
	for _, ts := range []*ThreadSubsExt{r.Extensions.ThreadSubscriptions, r.Extensions.ThreadSubscriptionsUnstable} {
		if ts != nil && ts.Limit != nil && *ts.Limit <= 0 {
			return invalid("thread_subscriptions limit must be greater than 0")
		}
	}
	return nil
}

func (c *RoomConfig) validate(what string) error {
	if c.TimelineLimit < 0 || c.TimelineLimit > MaxTimelineLimit {
		return invalid("%s: timeline_limit must be between 0 and %d", what, MaxTimelineLimit)
	}
	if len(c.RequiredState)+len(c.exclude) > MaxRequiredState {
		return invalid("%s: at most %d required_state pairs", what, MaxRequiredState)
	}
	for _, p := range c.RequiredState {
		if len(p) != 2 {
			return invalid("%s: each required_state entry must be [type, state_key]", what)
		}
	}
	return nil
}
