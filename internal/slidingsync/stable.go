package slidingsync

import (
	"context"
	"encoding/json"
	"time"

	"conclave/internal/matrix"
)

// The stable encoding, POST /_matrix/client/v4/sync (MSC4186 as accepted,
// "API"): the same engine, with a request and a response translated.
// Differences from the unstable encoding (the MSC's changelog):
//   - pos, timeout and set_presence are in the body;
//   - a list has one "range" [start, end] instead of "ranges";
//   - required_state is {include, exclude, lazy_members} with elements
//     {type?, state_key?} (absent: any) and no special strings;
//   - the filter is_invited instead of is_invite;
//   - a room answers "membership" and "lists" (the lists whose windows
//     hold it), "timeline_events" instead of "timeline", "stripped_state"
//     instead of "invite_state", "expanded_timeline" instead of
//     "unstable_expanded_timeline", and "name"/"avatar" null when the room
//     has none (an incremental room always says its name: null tells the
//     client a removed name is gone);
//   - a list answers only its count (rooms are not ordered by the server's
//     windows on the client: it orders by bump_stamp).
//
// The MSC names the timeline "timeline_events" in its tables and
// "timeline" in one example; the tables are followed. Extensions keep the
// unstable shapes (the MSC leaves them to other MSCs).

// StableRequest is a request in the stable encoding.
type StableRequest struct {
	ConnID            string                       `json:"conn_id"`
	Pos               string                       `json:"pos"`
	Timeout           *int64                       `json:"timeout"`
	SetPresence       *string                      `json:"set_presence"`
	Lists             map[string]*StableList       `json:"lists"`
	RoomSubscriptions map[string]*StableRoomConfig `json:"room_subscriptions"`
	Extensions        Extensions                   `json:"extensions"`
}

// StableRoomConfig is a room subscription (and the room part of a list).
// Both fields are required (MSC4186 "RoomSubscription").
type StableRoomConfig struct {
	TimelineLimit *int                 `json:"timeline_limit"`
	RequiredState *StableRequiredState `json:"required_state"`
}

// StableRequiredState is the stable required_state: the state matching
// include and not exclude, and with lazy_members the member events of the
// timeline's senders (never excluded).
type StableRequiredState struct {
	Include     []StateElement `json:"include"`
	Exclude     []StateElement `json:"exclude"`
	LazyMembers bool           `json:"lazy_members"`
}

// StateElement matches state by type and state key; an absent field
// matches any.
type StateElement struct {
	Type     *string `json:"type"`
	StateKey *string `json:"state_key"`
}

// StableList is a list in the stable encoding.
type StableList struct {
	StableRoomConfig
	Range   []int           `json:"range"`
	Filters json.RawMessage `json:"filters"`
}

// DecodeStable decodes a stable request body.
func DecodeStable(body []byte) (*StableRequest, error) {
	var req StableRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, matrix.BadJSON("Invalid sliding sync request: %v", err)
	}
	return &req, nil
}

// Presence is set_presence: "" when absent (the client is marked online),
// else "online", "offline" or "unavailable"; anything else is 400
// M_INVALID_PARAM (MSC4186 "Top-level").
func (r *StableRequest) Presence() (string, error) {
	if r.SetPresence == nil {
		return "", nil
	}
	switch p := *r.SetPresence; p {
	case "online", "offline", "unavailable":
		return p, nil
	}
	return "", invalid("set_presence must be online, offline or unavailable")
}

// TimeoutDuration is the long-poll's timeout, capped like /sync's.
func (r *StableRequest) TimeoutDuration() (time.Duration, error) {
	if r.Timeout == nil {
		return 0, nil
	}
	if *r.Timeout < 0 {
		return 0, invalid("timeout must be a non-negative integer")
	}
	return time.Duration(min(*r.Timeout, int64(MaxTimeout/time.Millisecond))) * time.Millisecond, nil
}

// request translates to the engine's request.
func (r *StableRequest) request() (*Request, error) {
	out := &Request{ConnID: r.ConnID, Extensions: r.Extensions}
	if r.Lists != nil {
		out.Lists = make(map[string]*List, len(r.Lists))
	}
	for name, l := range r.Lists {
		if l == nil {
			return nil, invalid("list %q must be an object", name)
		}
		rc, err := l.StableRoomConfig.config("list " + name)
		if err != nil {
			return nil, err
		}
		list := &List{RoomConfig: *rc}
		if l.Range != nil {
			if len(l.Range) != 2 {
				return nil, invalid("list %q: range must be [start, end]", name)
			}
			list.Ranges = [][]int{l.Range}
		}
		if len(l.Filters) > 0 && string(l.Filters) != "null" {
			var f Filters
			var renamed struct {
				IsInvited *bool `json:"is_invited"`
			}
			if err := json.Unmarshal(l.Filters, &f); err != nil {
				return nil, matrix.BadJSON("list %q: invalid filters: %v", name, err)
			}
			json.Unmarshal(l.Filters, &renamed)
			f.IsInvite = renamed.IsInvited // not the unstable name
			list.Filters = &f
		}
		out.Lists[name] = list
	}
	if r.RoomSubscriptions != nil {
		out.RoomSubscriptions = make(map[string]*RoomConfig, len(r.RoomSubscriptions))
	}
	for id, c := range r.RoomSubscriptions {
		if c == nil {
			return nil, invalid("room subscription %q must be an object", id)
		}
		rc, err := c.config("room subscription " + id)
		if err != nil {
			return nil, err
		}
		out.RoomSubscriptions[id] = rc
	}
	return out, nil
}

func (c *StableRoomConfig) config(what string) (*RoomConfig, error) {
	if c.TimelineLimit == nil {
		return nil, invalid("%s: timeline_limit is required", what)
	}
	if c.RequiredState == nil {
		return nil, invalid("%s: required_state is required", what)
	}
	rs := c.RequiredState
	if len(rs.Include)+len(rs.Exclude) > MaxRequiredState {
		return nil, invalid("%s: at most %d required_state elements", what, MaxRequiredState)
	}
	out := &RoomConfig{TimelineLimit: *c.TimelineLimit, RequiredState: make([][]string, 0, len(rs.Include)+1)}
	for _, e := range rs.Include {
		out.RequiredState = append(out.RequiredState, e.pair())
	}
	if rs.LazyMembers {
		out.RequiredState = append(out.RequiredState, []string{memberType, stateLazy})
	}
	if len(rs.Include) > 0 {
		// An exclude only takes from what include names; with nothing
		// included it has nothing to remove.
		for _, e := range rs.Exclude {
			out.exclude = append(out.exclude, e.pair())
		}
	}
	return out, nil
}

// pair is the element as an engine pair: an absent field is the wildcard,
// a present one is matched as itself.
func (e StateElement) pair() []string {
	p := []string{wildcard, wildcard}
	if e.Type != nil {
		p[0] = lit(*e.Type)
	}
	if e.StateKey != nil {
		p[1] = lit(*e.StateKey)
	}
	return p
}

func decodeStable(body []byte) (*Request, error) {
	sr, err := DecodeStable(body)
	if err != nil {
		return nil, err
	}
	return sr.request()
}

// SyncStable answers a stable request (body is the request as sent).
func (s *Service) SyncStable(ctx context.Context, userID, deviceID string, sr *StableRequest, body []byte) (*StableResponse, error) {
	req, err := sr.request()
	if err != nil {
		return nil, err
	}
	timeout, err := sr.TimeoutDuration()
	if err != nil {
		return nil, err
	}
	resp, err := s.syncWith(ctx, userID, deviceID, sr.Pos, timeout, req, body, decodeStable)
	if err != nil {
		return nil, err
	}
	return stableResponse(resp), nil
}

// StableResponse is a response in the stable encoding.
type StableResponse struct {
	Pos        string                       `json:"pos"`
	Lists      map[string]*StableListResult `json:"lists,omitempty"`
	Rooms      map[string]*StableRoom       `json:"rooms"`
	Extensions ExtensionsResponse           `json:"extensions"`
}

// StableListResult is a list's answer: its count.
type StableListResult struct {
	Count int `json:"count"`
}

// StableRoom is a room's answer in the stable encoding (MSC4186
// "RoomResult"). Invites and knocks answer the common fields, is_dm,
// initial and stripped_state.
type StableRoom struct {
	BumpStamp         *int64            `json:"bump_stamp,omitempty"`
	Membership        string            `json:"membership,omitempty"`
	Lists             []string          `json:"lists,omitempty"`
	Name              json.RawMessage   `json:"name,omitempty"`
	Avatar            json.RawMessage   `json:"avatar,omitempty"`
	Heroes            []Hero            `json:"heroes,omitempty"`
	IsDM              bool              `json:"is_dm,omitempty"`
	Initial           bool              `json:"initial,omitempty"`
	ExpandedTimeline  bool              `json:"expanded_timeline,omitempty"`
	RequiredState     []json.RawMessage `json:"required_state,omitempty"`
	TimelineEvents    []json.RawMessage `json:"timeline_events,omitempty"`
	PrevBatch         string            `json:"prev_batch,omitempty"`
	Limited           *bool             `json:"limited,omitempty"`
	NumLive           *int              `json:"num_live,omitempty"`
	JoinedCount       *int              `json:"joined_count,omitempty"`
	InvitedCount      *int              `json:"invited_count,omitempty"`
	NotificationCount *int              `json:"notification_count,omitempty"`
	HighlightCount    *int              `json:"highlight_count,omitempty"`
	StrippedState     []json.RawMessage `json:"stripped_state,omitempty"`
}

var jsonNull = json.RawMessage("null")

func nameField(v string) json.RawMessage {
	if v == "" {
		return jsonNull
	}
	b, _ := json.Marshal(v)
	return b
}

func stableResponse(r *Response) *StableResponse {
	out := &StableResponse{Pos: r.Pos, Rooms: make(map[string]*StableRoom, len(r.Rooms)), Extensions: r.Extensions}
	if r.Lists != nil {
		out.Lists = make(map[string]*StableListResult, len(r.Lists))
		for name, l := range r.Lists {
			out.Lists[name] = &StableListResult{Count: l.Count}
		}
	}
	for id, room := range r.Rooms {
		sr := &StableRoom{BumpStamp: room.BumpStamp, Membership: room.membership, Lists: room.lists, IsDM: room.IsDM, Initial: room.Initial}
		if room.membership == "invite" || room.membership == "knock" {
			sr.StrippedState = room.InviteState
			if sr.StrippedState == nil {
				sr.StrippedState = []json.RawMessage{} // required
			}
			out.Rooms[id] = sr
			continue
		}
		if room.Initial {
			// Initial: an absent name is no name.
			if room.Name != "" {
				sr.Name = nameField(room.Name)
			}
			if room.Avatar != "" {
				sr.Avatar = nameField(room.Avatar)
			}
		} else {
			sr.Name, sr.Avatar = nameField(room.Name), nameField(room.Avatar)
		}
		sr.Heroes = room.Heroes
		sr.ExpandedTimeline = room.UnstableExpandedTimeline
		sr.RequiredState, sr.TimelineEvents = room.RequiredState, room.Timeline
		sr.PrevBatch, sr.Limited, sr.NumLive = room.PrevBatch, room.Limited, room.NumLive
		sr.JoinedCount, sr.InvitedCount = room.JoinedCount, room.InvitedCount
		nc, hc := room.NotificationCount, room.HighlightCount
		sr.NotificationCount, sr.HighlightCount = &nc, &hc
		out.Rooms[id] = sr
	}
	return out
}
