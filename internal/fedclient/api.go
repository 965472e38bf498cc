package fedclient

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
)

// The typed calls: thin, one per endpoint, shapes as in the spec's
// data/api/server-server/*.yaml. Events stay json.RawMessage: the room
// graph parses and checks them for their room version.

func esc(s string) string { return url.PathEscape(s) }

// GetServerKeys fetches GET /_matrix/key/v2/server, unsigned (the keys are
// what a signature would be checked with), and returns the raw answer for
// the keyring to verify.
func (c *Client) GetServerKeys(ctx context.Context, server string) (json.RawMessage, error) {
	var out json.RawMessage
	err := c.do(ctx, request{method: http.MethodGet, dest: server, path: "/_matrix/key/v2/server", out: &out, unsigned: true})
	return out, err
}

// MaxKeyQueryBody bounds a notary's answer to QueryServerKeys: one server asked
// about, so a few key responses (the keyring takes each up to 1 MiB and
// looks at the first few).
const MaxKeyQueryBody = 2 << 20

// QueryServerKeys asks notary for server's keys: POST /_matrix/key/v2/query with
// {"server_keys": {server: {keyID: {"minimum_valid_until_ts": …}}}}
// (Server-Server API, "Querying Keys Through Another Server"), unsigned
// like GetServerKeys (the endpoint needs no authentication, and the notary
// need not know our keys to answer), and returns the raw answer for the
// keyring to verify. keyID empty: any key of server's.
func (c *Client) QueryServerKeys(ctx context.Context, notary, server, keyID string, minValidUntil int64) (json.RawMessage, error) {
	criteria := map[string]any{}
	if keyID != "" {
		criteria[keyID] = map[string]int64{"minimum_valid_until_ts": minValidUntil}
	}
	body := map[string]any{"server_keys": map[string]any{server: criteria}}
	var out json.RawMessage
	err := c.do(ctx, request{method: http.MethodPost, dest: notary, path: "/_matrix/key/v2/query", body: body, out: &out, maxBody: MaxKeyQueryBody, unsigned: true})
	return out, err
}

// SendTransaction sends PUT /_matrix/federation/v1/send/{txnId} with a
// transaction body ({origin, origin_server_ts, pdus, edus}) and returns the
// answer ({"pdus": {event ID: {} or {"error": …}}}).
func (c *Client) SendTransaction(ctx context.Context, dest, txnID string, body []byte) (json.RawMessage, error) {
	var out json.RawMessage
	err := c.do(ctx, request{method: http.MethodPut, dest: dest, path: "/_matrix/federation/v1/send/" + esc(txnID), body: json.RawMessage(body), out: &out})
	return out, err
}

// MakeMembership is the answer of make_join, make_leave and make_knock: a
// template event to fill in, sign and send back, and the room's version.
type MakeMembership struct {
	RoomVersion string          `json:"room_version"`
	Event       json.RawMessage `json:"event"`
}

func versions(vs []string) url.Values {
	q := url.Values{}
	for _, v := range vs {
		q.Add("ver", v)
	}
	return q
}

// MakeJoin asks GET /_matrix/federation/v1/make_join/{roomId}/{userId},
// offering the room versions we support (ver=…).
func (c *Client) MakeJoin(ctx context.Context, dest, roomID, userID string, roomVersions []string) (*MakeMembership, error) {
	var out MakeMembership
	err := c.do(ctx, request{method: http.MethodGet, dest: dest, path: "/_matrix/federation/v1/make_join/" + esc(roomID) + "/" + esc(userID), query: versions(roomVersions), out: &out})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// SendJoinResponse is the answer of PUT /v2/send_join: the room's state
// and auth chain at the join (members omitted when asked and the server
// agreed), and the join event as the resident server signed it.
type SendJoinResponse struct {
	Origin         string            `json:"origin"`
	AuthChain      []json.RawMessage `json:"auth_chain"`
	State          []json.RawMessage `json:"state"`
	Event          json.RawMessage   `json:"event,omitempty"`
	MembersOmitted bool              `json:"members_omitted,omitempty"`
	ServersInRoom  []string          `json:"servers_in_room,omitempty"`
}

// SendJoinV2 sends PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}.
// The answer may hold a big room's whole state: up to LargeMaxBody.
func (c *Client) SendJoinV2(ctx context.Context, dest, roomID, eventID string, event json.RawMessage, omitMembers bool) (*SendJoinResponse, error) {
	var q url.Values
	if omitMembers {
		q = url.Values{"omit_members": {"true"}}
	}
	var out SendJoinResponse
	err := c.do(ctx, request{method: http.MethodPut, dest: dest, path: "/_matrix/federation/v2/send_join/" + esc(roomID) + "/" + esc(eventID),
		query: q, body: event, out: &out, maxBody: LargeMaxBody, timeout: 5 * c.timeout})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// MakeLeave asks GET /_matrix/federation/v1/make_leave/{roomId}/{userId}.
func (c *Client) MakeLeave(ctx context.Context, dest, roomID, userID string) (*MakeMembership, error) {
	var out MakeMembership
	err := c.do(ctx, request{method: http.MethodGet, dest: dest, path: "/_matrix/federation/v1/make_leave/" + esc(roomID) + "/" + esc(userID), out: &out})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// SendLeaveV2 sends PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}
// (the answer is an empty object).
func (c *Client) SendLeaveV2(ctx context.Context, dest, roomID, eventID string, event json.RawMessage) error {
	return c.do(ctx, request{method: http.MethodPut, dest: dest, path: "/_matrix/federation/v2/send_leave/" + esc(roomID) + "/" + esc(eventID), body: event})
}

// InviteRequest is the body of PUT /v2/invite.
type InviteRequest struct {
	RoomVersion     string            `json:"room_version"`
	Event           json.RawMessage   `json:"event"`
	InviteRoomState []json.RawMessage `json:"invite_room_state,omitempty"`
}

// InviteV2 sends PUT /_matrix/federation/v2/invite/{roomId}/{eventId} and
// returns the invite event signed by the invitee's server.
func (c *Client) InviteV2(ctx context.Context, dest, roomID, eventID string, req InviteRequest) (json.RawMessage, error) {
	var out struct {
		Event json.RawMessage `json:"event"`
	}
	err := c.do(ctx, request{method: http.MethodPut, dest: dest, path: "/_matrix/federation/v2/invite/" + esc(roomID) + "/" + esc(eventID), body: req, out: &out})
	if err != nil {
		return nil, err
	}
	return out.Event, nil
}

// MakeKnock asks GET /_matrix/federation/v1/make_knock/{roomId}/{userId}.
func (c *Client) MakeKnock(ctx context.Context, dest, roomID, userID string, roomVersions []string) (*MakeMembership, error) {
	var out MakeMembership
	err := c.do(ctx, request{method: http.MethodGet, dest: dest, path: "/_matrix/federation/v1/make_knock/" + esc(roomID) + "/" + esc(userID), query: versions(roomVersions), out: &out})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// SendKnock sends PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}
// and returns knock_room_state (stripped state for the knocker).
func (c *Client) SendKnock(ctx context.Context, dest, roomID, eventID string, event json.RawMessage) ([]json.RawMessage, error) {
	var out struct {
		KnockRoomState []json.RawMessage `json:"knock_room_state"`
	}
	err := c.do(ctx, request{method: http.MethodPut, dest: dest, path: "/_matrix/federation/v1/send_knock/" + esc(roomID) + "/" + esc(eventID), body: event, out: &out})
	if err != nil {
		return nil, err
	}
	return out.KnockRoomState, nil
}

// Transaction is the envelope /event and /backfill answer with.
type Transaction struct {
	Origin         string            `json:"origin"`
	OriginServerTS int64             `json:"origin_server_ts"`
	PDUs           []json.RawMessage `json:"pdus"`
}

// GetEvent asks GET /_matrix/federation/v1/event/{eventId}; the event is
// the single PDU of the answer.
func (c *Client) GetEvent(ctx context.Context, dest, eventID string) (*Transaction, error) {
	var out Transaction
	if err := c.do(ctx, request{method: http.MethodGet, dest: dest, path: "/_matrix/federation/v1/event/" + esc(eventID), out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// StateIDs is the answer of /state_ids: the room state before the event
// and its auth chain, as event IDs.
type StateIDs struct {
	AuthChainIDs []string `json:"auth_chain_ids"`
	PDUIDs       []string `json:"pdu_ids"`
}

// GetStateIDs asks GET /_matrix/federation/v1/state_ids/{roomId}?event_id=.
func (c *Client) GetStateIDs(ctx context.Context, dest, roomID, eventID string) (*StateIDs, error) {
	var out StateIDs
	err := c.do(ctx, request{method: http.MethodGet, dest: dest, path: "/_matrix/federation/v1/state_ids/" + esc(roomID),
		query: url.Values{"event_id": {eventID}}, out: &out, maxBody: LargeMaxBody})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// State is the answer of /state: the room state before the event and its
// auth chain, as full PDUs.
type State struct {
	AuthChain []json.RawMessage `json:"auth_chain"`
	PDUs      []json.RawMessage `json:"pdus"`
}

// GetState asks GET /_matrix/federation/v1/state/{roomId}?event_id=.
func (c *Client) GetState(ctx context.Context, dest, roomID, eventID string) (*State, error) {
	var out State
	err := c.do(ctx, request{method: http.MethodGet, dest: dest, path: "/_matrix/federation/v1/state/" + esc(roomID),
		query: url.Values{"event_id": {eventID}}, out: &out, maxBody: LargeMaxBody, timeout: 5 * c.timeout})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// GetEventAuth asks GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}
// and returns the event's auth chain.
func (c *Client) GetEventAuth(ctx context.Context, dest, roomID, eventID string) ([]json.RawMessage, error) {
	var out struct {
		AuthChain []json.RawMessage `json:"auth_chain"`
	}
	err := c.do(ctx, request{method: http.MethodGet, dest: dest, path: "/_matrix/federation/v1/event_auth/" + esc(roomID) + "/" + esc(eventID),
		out: &out, maxBody: LargeMaxBody, timeout: 5 * c.timeout})
	if err != nil {
		return nil, err
	}
	return out.AuthChain, nil
}

// Backfill asks GET /_matrix/federation/v1/backfill/{roomId}?v=…&limit=
// for up to limit events before (and including) the events in from.
func (c *Client) Backfill(ctx context.Context, dest, roomID string, from []string, limit int) (*Transaction, error) {
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	for _, v := range from {
		q.Add("v", v)
	}
	var out Transaction
	err := c.do(ctx, request{method: http.MethodGet, dest: dest, path: "/_matrix/federation/v1/backfill/" + esc(roomID), query: q, out: &out, maxBody: LargeMaxBody})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// TimestampEvent is the answer of /timestamp_to_event.
type TimestampEvent struct {
	EventID        string `json:"event_id"`
	OriginServerTS int64  `json:"origin_server_ts"`
}

// TimestampToEvent asks GET /_matrix/federation/v1/timestamp_to_event/{roomId}
// ?ts=&dir= for the event closest to ts (dir "b" or "f").
func (c *Client) TimestampToEvent(ctx context.Context, dest, roomID string, ts int64, dir string) (*TimestampEvent, error) {
	var out TimestampEvent
	err := c.do(ctx, request{method: http.MethodGet, dest: dest, path: "/_matrix/federation/v1/timestamp_to_event/" + esc(roomID),
		query: url.Values{"ts": {strconv.FormatInt(ts, 10)}, "dir": {dir}}, out: &out})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// MissingEventsRequest is the body of /get_missing_events.
type MissingEventsRequest struct {
	EarliestEvents []string `json:"earliest_events"`
	LatestEvents   []string `json:"latest_events"`
	Limit          int      `json:"limit,omitempty"`
	MinDepth       int64    `json:"min_depth,omitempty"`
}

// GetMissingEvents asks POST /_matrix/federation/v1/get_missing_events/{roomId}
// and returns the events.
func (c *Client) GetMissingEvents(ctx context.Context, dest, roomID string, req MissingEventsRequest) ([]json.RawMessage, error) {
	if req.EarliestEvents == nil {
		req.EarliestEvents = []string{}
	}
	if req.LatestEvents == nil {
		req.LatestEvents = []string{}
	}
	var out struct {
		Events []json.RawMessage `json:"events"`
	}
	err := c.do(ctx, request{method: http.MethodPost, dest: dest, path: "/_matrix/federation/v1/get_missing_events/" + esc(roomID), body: req, out: &out, maxBody: LargeMaxBody})
	if err != nil {
		return nil, err
	}
	return out.Events, nil
}

// Directory is the answer of /query/directory.
type Directory struct {
	RoomID  string   `json:"room_id"`
	Servers []string `json:"servers"`
}

// QueryDirectory asks GET /_matrix/federation/v1/query/directory?room_alias=.
func (c *Client) QueryDirectory(ctx context.Context, dest, alias string) (*Directory, error) {
	var out Directory
	if err := c.do(ctx, request{method: http.MethodGet, dest: dest, path: "/_matrix/federation/v1/query/directory", query: url.Values{"room_alias": {alias}}, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// QueryProfile asks GET /_matrix/federation/v1/query/profile?user_id=&field=
// (field "" for the whole profile) and returns the raw profile object.
func (c *Client) QueryProfile(ctx context.Context, dest, userID, field string) (json.RawMessage, error) {
	q := url.Values{"user_id": {userID}}
	if field != "" {
		q.Set("field", field)
	}
	var out json.RawMessage
	err := c.do(ctx, request{method: http.MethodGet, dest: dest, path: "/_matrix/federation/v1/query/profile", query: q, out: &out})
	return out, err
}
