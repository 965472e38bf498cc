package slidingsync

import (
	"encoding/json"

	"conclave/internal/threadsubs"
)

// Response is a sliding sync response, in Synapse's encoding of the
// unstable endpoint (synapse/rest/client/sync.py encode_response).
type Response struct {
	Pos        string                   `json:"pos"`
	Lists      map[string]*ListResponse `json:"lists,omitempty"`
	Rooms      map[string]*Room         `json:"rooms"`
	Extensions ExtensionsResponse       `json:"extensions"`
}

// ListResponse is a list's size and its windows.
type ListResponse struct {
	Count int  `json:"count"`
	Ops   []Op `json:"ops"`
}

// Op is a SYNC operation: the rooms of one requested range (the only
// operation of the simplified protocol; clients order rooms themselves by
// bump_stamp).
type Op struct {
	Op      string   `json:"op"`
	Range   []int    `json:"range"`
	RoomIDs []string `json:"room_ids"`
}

// Room is one room's update. notification_count and highlight_count are
// always present; the rest only when set, as Synapse encodes it.
type Room struct {
	NotificationCount        int               `json:"notification_count"`
	HighlightCount           int               `json:"highlight_count"`
	BumpStamp                *int64            `json:"bump_stamp,omitempty"`
	JoinedCount              *int              `json:"joined_count,omitempty"`
	InvitedCount             *int              `json:"invited_count,omitempty"`
	Name                     string            `json:"name,omitempty"`
	Avatar                   string            `json:"avatar,omitempty"`
	Heroes                   []Hero            `json:"heroes,omitempty"`
	Initial                  bool              `json:"initial,omitempty"`
	UnstableExpandedTimeline bool              `json:"unstable_expanded_timeline,omitempty"`
	RequiredState            []json.RawMessage `json:"required_state,omitempty"`
	Timeline                 []json.RawMessage `json:"timeline,omitempty"`
	Limited                  *bool             `json:"limited,omitempty"`
	PrevBatch                string            `json:"prev_batch,omitempty"`
	NumLive                  *int              `json:"num_live,omitempty"`
	IsDM                     bool              `json:"is_dm,omitempty"`
	InviteState              []json.RawMessage `json:"invite_state,omitempty"`

	// For the stable encoding (stable.go): the user's membership and the
	// lists whose windows hold the room.
	membership string
	lists      []string
}

// Hero is a member a client may name an unnamed room after.
type Hero struct {
	UserID      string `json:"user_id"`
	DisplayName string `json:"displayname,omitempty"`
	AvatarURL   string `json:"avatar_url,omitempty"`
}

// ExtensionsResponse holds the enabled extensions' answers.
type ExtensionsResponse struct {
	ToDevice    *ToDeviceResponse    `json:"to_device,omitempty"`
	E2EE        *E2EEResponse        `json:"e2ee,omitempty"`
	AccountData *AccountDataResponse `json:"account_data,omitempty"`
	Receipts    *RoomsEvents         `json:"receipts,omitempty"`
	Typing      *RoomsEvents         `json:"typing,omitempty"`

	ThreadSubscriptions         *ThreadSubsResponse `json:"thread_subscriptions,omitempty"`
	ThreadSubscriptionsUnstable *ThreadSubsResponse `json:"io.element.msc4308.thread_subscriptions,omitempty"`
}

// ThreadSubsResponse is the thread_subscriptions extension's answer: the
// latest changes since the connection's position, and a token for
// /thread_subscriptions when older ones were left out.
type ThreadSubsResponse struct {
	threadsubs.Encoded
	PrevBatch string `json:"prev_batch,omitempty"`
}

// ToDeviceResponse is the to_device extension's answer.
type ToDeviceResponse struct {
	NextBatch string            `json:"next_batch"`
	Events    []json.RawMessage `json:"events"`
}

// E2EEResponse is the e2ee extension's answer. The counts are always sent
// (clients read a missing count as "upload more"); device_lists only from
// an incremental request.
type E2EEResponse struct {
	OTKCounts        map[string]int `json:"device_one_time_keys_count"`
	FallbackKeyTypes []string       `json:"device_unused_fallback_key_types"`
	DeviceLists      *DeviceLists   `json:"device_lists,omitempty"`
}

// DeviceLists are users whose devices changed, or who no longer share a
// room with the user.
type DeviceLists struct {
	Changed []string `json:"changed"`
	Left    []string `json:"left"`
}

// AccountDataResponse is the account_data extension's answer.
type AccountDataResponse struct {
	Global []json.RawMessage            `json:"global"`
	Rooms  map[string][]json.RawMessage `json:"rooms"`
}

// RoomsEvents is an extension answer of one event per room (m.receipt,
// m.typing).
type RoomsEvents struct {
	Rooms map[string]json.RawMessage `json:"rooms"`
}

// empty reports whether the extensions carry nothing new (key counts alone
// are not news).
func (e *ExtensionsResponse) empty() bool {
	if e.ToDevice != nil && len(e.ToDevice.Events) > 0 {
		return false
	}
	if e.E2EE != nil && e.E2EE.DeviceLists != nil && (len(e.E2EE.DeviceLists.Changed) > 0 || len(e.E2EE.DeviceLists.Left) > 0) {
		return false
	}
	if e.AccountData != nil && (len(e.AccountData.Global) > 0 || len(e.AccountData.Rooms) > 0) {
		return false
	}
	if e.Receipts != nil && len(e.Receipts.Rooms) > 0 {
		return false
	}
	if e.ThreadSubscriptions != nil || e.ThreadSubscriptionsUnstable != nil {
		return false // only sent with changes
	}
	return e.Typing == nil || len(e.Typing.Rooms) == 0
}
