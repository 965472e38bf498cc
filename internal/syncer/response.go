package syncer

import (
	"encoding/json"
	"strconv"
)

// Response is the /sync response body (Client-Server API, "Syncing").
type Response struct {
	NextBatch   string      `json:"next_batch"`
	Rooms       Rooms       `json:"rooms"`
	Presence    Events      `json:"presence"`
	AccountData Events      `json:"account_data"`
	ToDevice    Events      `json:"to_device"`
	DeviceLists DeviceLists `json:"device_lists"`
	// device_one_time_keys_count is always sent once keys exist (clients
	// read a missing count as "upload more"), unused fallback types likewise.
	OTKCounts        map[string]int `json:"device_one_time_keys_count,omitempty"`
	FallbackKeyTypes []string       `json:"device_unused_fallback_key_types"`
}

// Rooms groups rooms by the user's membership.
type Rooms struct {
	Join   map[string]*JoinedRoom  `json:"join"`
	Invite map[string]*InvitedRoom `json:"invite"`
	Leave  map[string]*LeftRoom    `json:"leave"`
	Knock  map[string]*KnockedRoom `json:"knock"`
}

// Events is a list of events under "events".
type Events struct {
	Events []json.RawMessage `json:"events"`
}

// StateEvents is the state section.
type StateEvents = Events

// Timeline is a room's timeline section.
type Timeline struct {
	Events    []json.RawMessage `json:"events"`
	Limited   bool              `json:"limited"`
	PrevBatch string            `json:"prev_batch,omitempty"`
}

// JoinedRoom is one joined room's update.
type JoinedRoom struct {
	Summary             *RoomSummary  `json:"summary,omitempty"`
	State               Events        `json:"state"`
	Timeline            Timeline      `json:"timeline"`
	Ephemeral           Events        `json:"ephemeral"`
	AccountData         Events        `json:"account_data"`
	UnreadNotifications *UnreadCounts `json:"unread_notifications,omitempty"`
	// UnreadThreadNotifications: per thread root, when the timeline
	// filter asks for unread_thread_notifications.
	UnreadThreadNotifications map[string]*UnreadCounts `json:"unread_thread_notifications,omitempty"`
}

// RoomSummary helps clients name rooms without all members.
type RoomSummary struct {
	Heroes  []string `json:"m.heroes"`
	Joined  int      `json:"m.joined_member_count"`
	Invited int      `json:"m.invited_member_count"`
}

// UnreadCounts are a room's notification counts.
type UnreadCounts struct {
	HighlightCount    int `json:"highlight_count"`
	NotificationCount int `json:"notification_count"`
}

// InvitedRoom carries the stripped state of an invite.
type InvitedRoom struct {
	InviteState Events `json:"invite_state"`
}

// KnockedRoom carries the stripped state of a knock.
type KnockedRoom struct {
	KnockState Events `json:"knock_state"`
}

// LeftRoom is a room the user left or was removed from.
type LeftRoom struct {
	State       Events   `json:"state"`
	Timeline    Timeline `json:"timeline"`
	AccountData Events   `json:"account_data"`
}

// DeviceLists are users whose device lists changed or who no longer share a room.
type DeviceLists struct {
	Changed []string `json:"changed,omitempty"`
	Left    []string `json:"left,omitempty"`
}

func newResponse() *Response {
	return &Response{Rooms: Rooms{
		Join:   map[string]*JoinedRoom{},
		Invite: map[string]*InvitedRoom{},
		Leave:  map[string]*LeftRoom{},
		Knock:  map[string]*KnockedRoom{},
	}}
}

// empty reports whether the response carries nothing new for the client.
func (r *Response) empty() bool {
	return len(r.Rooms.Join) == 0 && len(r.Rooms.Invite) == 0 && len(r.Rooms.Leave) == 0 && len(r.Rooms.Knock) == 0 &&
		len(r.Presence.Events) == 0 && len(r.AccountData.Events) == 0 && len(r.ToDevice.Events) == 0 &&
		len(r.DeviceLists.Changed) == 0 && len(r.DeviceLists.Left) == 0
}

// MarshalJSON makes nil event lists encode as [] rather than null, which
// some clients choke on.
func (e Events) MarshalJSON() ([]byte, error) {
	if e.Events == nil {
		return []byte(`{"events":[]}`), nil
	}
	type plain Events
	return json.Marshal(plain(e))
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
