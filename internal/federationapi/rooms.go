package federationapi

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"

	"conclave/internal/event"
	"conclave/internal/jsonhttp"
	"conclave/internal/matrix"
)

// The room endpoints of the Server-Server API: transactions, joins and
// leaves through this server, and reading events, state and history. Every
// one is behind request authentication (HandleSigned).

func (a *API) registerRooms(mux Mux) {
	if a.Rooms == nil || a.Federation == nil {
		return
	}
	sign := func(p string, h func(http.ResponseWriter, *http.Request)) { a.HandleSigned(mux, p, a.withACL(h)) }
	sign("PUT /_matrix/federation/v1/send/{txnId}", a.send)
	sign("GET /_matrix/federation/v1/make_join/{roomId}/{userId}", a.makeMembership("join"))
	sign("GET /_matrix/federation/v1/make_leave/{roomId}/{userId}", a.makeMembership("leave"))
	sign("GET /_matrix/federation/v1/make_knock/{roomId}/{userId}", a.makeMembership("knock"))
	sign("PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}", a.sendMembership("join", 2))
	sign("PUT /_matrix/federation/v1/send_join/{roomId}/{eventId}", a.sendMembership("join", 1))
	sign("PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}", a.sendMembership("leave", 2))
	sign("PUT /_matrix/federation/v1/send_leave/{roomId}/{eventId}", a.sendMembership("leave", 1))
	// send_knock has only a v1, which answers a plain object (not the
	// [200, {…}] of v1 send_join and send_leave).
	sign("PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}", a.sendMembership("knock", 2))
	sign("GET /_matrix/federation/v1/event/{eventId}", a.getEvent)
	sign("GET /_matrix/federation/v1/state_ids/{roomId}", a.roomState(true))
	sign("GET /_matrix/federation/v1/state/{roomId}", a.roomState(false))
	sign("GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}", a.eventAuth)
	sign("POST /_matrix/federation/v1/get_missing_events/{roomId}", a.getMissingEvents)
	sign("GET /_matrix/federation/v1/backfill/{roomId}", a.backfill)
	sign("GET /_matrix/federation/v1/timestamp_to_event/{roomId}", a.timestampToEvent)
	sign("PUT /_matrix/federation/v2/invite/{roomId}/{eventId}", a.invite)
}

// withACL refuses a request about a room whose m.room.server_acl denies the
// requesting server (403 M_FORBIDDEN), as Synapse does on every federation
// endpoint that names a room. /send is checked PDU by PDU and EDU by EDU.
func (a *API) withACL(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if roomID := r.PathValue("roomId"); roomID != "" && !a.Rooms.ServerAllowed(r.Context(), roomID, Origin(r.Context())) {
			jsonhttp.Error(w, r, matrix.Forbidden("Server is banned from room"))
			return
		}
		h(w, r)
	}
}

// send: PUT /_matrix/federation/v1/send/{txnId}.
func (a *API) send(w http.ResponseWriter, r *http.Request) {
	body, err := jsonhttp.ReadBody(r, MaxRequestBody)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	answer, err := a.Federation.Transaction(r.Context(), Origin(r.Context()), r.PathValue("txnId"), body, a.EDUs)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.Write(w, http.StatusOK, answer)
}

// makeMembership: make_join, make_leave and make_knock. The user must be
// of the requesting server.
func (a *API) makeMembership(membership string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		roomID, userID := r.PathValue("roomId"), r.PathValue("userId")
		if matrix.ServerOf(userID) != Origin(r.Context()) {
			jsonhttp.Error(w, r, matrix.Forbidden("The user is not on the requesting server"))
			return
		}
		var versions []string
		if membership != "leave" {
			// "ver": the room versions the joining server supports; none
			// given means version 1 only (Server-Server API, make_join).
			versions = r.URL.Query()["ver"]
			if len(versions) == 0 {
				versions = []string{"1"}
			}
		}
		rv, tmpl, err := a.Rooms.MembershipTemplate(r.Context(), roomID, userID, membership, versions)
		if err != nil {
			jsonhttp.Error(w, r, err)
			return
		}
		jsonhttp.OK(w, map[string]any{"room_version": rv, "event": tmpl})
	}
}

// sendMembership: send_join, send_leave (v1 and v2) and send_knock.
// Complement expects 400 from v1 and v2 alike for an event of the wrong
// membership (the spec removed v1 send_join/send_leave in v1.18 but
// servers still answer it as Synapse does).
func (a *API) sendMembership(membership string, version int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		roomID, eventID := r.PathValue("roomId"), r.PathValue("eventId")
		rv, err := a.Rooms.RoomVersion(ctx, roomID)
		if err != nil {
			jsonhttp.Error(w, r, err)
			return
		}
		body, err := jsonhttp.ReadObject(r, MaxRequestBody)
		if err != nil {
			jsonhttp.Error(w, r, err)
			return
		}
		pdu, err := event.ParsePDU(rv, body)
		if err != nil {
			jsonhttp.Error(w, r, matrix.BadJSON("%s", err.Error()))
			return
		}
		// A restricted join this server authorises is signed here (by
		// AcceptMembership): until then only the joining server's signature
		// can be checked. Any other event carries every signature it needs.
		verify := a.Keyring.VerifyEvent
		if membership == "join" && authorisedHere(pdu, a.ServerName) {
			verify = func(ctx context.Context, pdu *event.PDU) error {
				return a.Keyring.EventSignedBy(ctx, pdu, matrix.ServerOf(pdu.Sender))
			}
		}
		if err := verify(ctx, pdu); err != nil {
			jsonhttp.Error(w, r, matrix.Forbidden("Signature check failed: %s", err.Error()))
			return
		}
		stored, err := a.Rooms.AcceptMembership(ctx, Origin(ctx), roomID, eventID, membership, pdu)
		if err != nil {
			jsonhttp.Error(w, r, err)
			return
		}
		var out any = struct{}{}
		switch membership {
		case "join":
			resp, err := a.joinAnswer(r, roomID, stored)
			if err != nil {
				jsonhttp.Error(w, r, err)
				return
			}
			out = resp
		case "knock":
			// The stripped state the knocking user's clients show.
			out = map[string]any{"knock_room_state": a.strippedState(r, roomID)}
		}
		if version == 1 {
			out = []any{200, out}
		}
		jsonhttp.OK(w, out)
	}
}

// authorisedHere reports whether a join names a user of this server in
// join_authorised_via_users_server.
func authorisedHere(pdu *event.PDU, serverName string) bool {
	var c struct {
		Via string `json:"join_authorised_via_users_server"`
	}
	return json.Unmarshal(pdu.Content, &c) == nil && c.Via != "" && matrix.ServerOf(c.Via) == serverName
}

// joinAnswer is send_join's answer: the state before the join, its auth
// chain, and the join as stored here.
func (a *API) joinAnswer(r *http.Request, roomID string, join *event.PDU) (map[string]any, error) {
	ctx := r.Context()
	state, chain, err := a.stateAndChain(r, roomID, join.EventID, join.AuthEvents)
	if err != nil {
		return nil, err
	}
	servers, err := a.Rooms.ServersInRoom(ctx, roomID)
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"origin": a.ServerName, "event": json.RawMessage(join.Raw),
		"state": raws(state), "auth_chain": raws(chain),
		"members_omitted": false, "servers_in_room": servers,
	}, nil
}

// stateAndChain reads the state before an event and the auth chain of that
// state and of extra auth events.
func (a *API) stateAndChain(r *http.Request, roomID, eventID string, extraAuth []string) ([]*event.PDU, []*event.PDU, error) {
	ctx := r.Context()
	ids, err := a.Rooms.StateBefore(ctx, roomID, eventID)
	if err != nil {
		return nil, nil, err
	}
	stateIDs := make([]string, 0, len(ids))
	for _, id := range ids {
		stateIDs = append(stateIDs, id)
	}
	slices.Sort(stateIDs)
	state, err := a.Rooms.Events(ctx, roomID, stateIDs)
	if err != nil {
		return nil, nil, err
	}
	rv, err := a.Rooms.RoomVersion(ctx, roomID)
	if err != nil {
		return nil, nil, err
	}
	chain, err := a.Rooms.AuthChain(ctx, rv, append(slices.Clone(stateIDs), extraAuth...))
	if err != nil {
		return nil, nil, err
	}
	return state, chain, nil
}

// strippedState is the room's stripped state for invites and knocks.
func (a *API) strippedState(r *http.Request, roomID string) []json.RawMessage {
	st, err := a.Rooms.StrippedState(r.Context(), roomID)
	if err != nil {
		return []json.RawMessage{}
	}
	return st
}

// mayRead refuses a server with no member in the room: what the room holds
// is for the servers taking part in it (Server-Server API: servers "must
// not" be given events they may not see). /event, /backfill and
// /get_missing_events then judge each event by the state at it
// (room.Service.ForServer: redacted if the server may not see it). /state,
// /state_ids and /event_auth answer any server in the room, as Synapse does:
// the state at an event is what a server needs to check the events after it,
// including ones it receives redacted.
func (a *API) mayRead(r *http.Request, roomID string) error {
	servers, err := a.Rooms.ServersInRoom(r.Context(), roomID)
	if err != nil {
		return err
	}
	if !slices.Contains(servers, Origin(r.Context())) {
		return matrix.Forbidden("Your server has no member in this room")
	}
	return nil
}

// getEvent: GET /_matrix/federation/v1/event/{eventId}.
func (a *API) getEvent(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	pdu, err := a.Rooms.AnyEvent(ctx, r.PathValue("eventId"))
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	if err := a.mayRead(r, pdu.RoomID); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	// An event the server may not see is given redacted (Synapse's
	// get_persisted_pdu), not refused: the server may need it to link the
	// graph.
	out, err := a.Rooms.ForServer(ctx, pdu.RoomID, Origin(ctx), []*event.PDU{pdu})
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, a.txnShape(out))
}

func (a *API) txnShape(pdus []*event.PDU) map[string]any {
	return map[string]any{"origin": a.ServerName, "origin_server_ts": a.Now().UnixMilli(), "pdus": raws(pdus)}
}

func raws(pdus []*event.PDU) []json.RawMessage {
	out := make([]json.RawMessage, len(pdus))
	for i, p := range pdus {
		out[i] = p.Raw
	}
	return out
}

// roomState answers GET /_matrix/federation/v1/state_ids/{roomId}?event_id=
// (idsOnly: {pdu_ids, auth_chain_ids}) and /state ({pdus, auth_chain}): the
// state before the event and its auth chain.
func (a *API) roomState(idsOnly bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		roomID, eventID := r.PathValue("roomId"), r.URL.Query().Get("event_id")
		if err := a.mayRead(r, roomID); err != nil {
			jsonhttp.Error(w, r, err)
			return
		}
		state, chain, err := a.stateAndChain(r, roomID, eventID, nil)
		if err != nil {
			jsonhttp.Error(w, r, err)
			return
		}
		if idsOnly {
			jsonhttp.OK(w, map[string]any{"pdu_ids": ids(state), "auth_chain_ids": ids(chain)})
			return
		}
		jsonhttp.OK(w, map[string]any{"pdus": raws(state), "auth_chain": raws(chain)})
	}
}

func ids(pdus []*event.PDU) []string {
	out := make([]string, len(pdus))
	for i, p := range pdus {
		out[i] = p.EventID
	}
	return out
}

// eventAuth: GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}.
func (a *API) eventAuth(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	roomID, eventID := r.PathValue("roomId"), r.PathValue("eventId")
	if err := a.mayRead(r, roomID); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	evs, err := a.Rooms.Events(ctx, roomID, []string{eventID})
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	if len(evs) == 0 {
		jsonhttp.Error(w, r, matrix.NotFound("Event not found"))
		return
	}
	// The event's auth chain: its auth events and theirs, recursively.
	chain, err := a.Rooms.AuthChain(ctx, evs[0].Version, []string{eventID})
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]any{"auth_chain": raws(chain)})
}

// getMissingEvents: POST /_matrix/federation/v1/get_missing_events/{roomId}.
func (a *API) getMissingEvents(w http.ResponseWriter, r *http.Request) {
	roomID := r.PathValue("roomId")
	var req struct {
		Earliest []string `json:"earliest_events"`
		Latest   []string `json:"latest_events"`
		Limit    int      `json:"limit"`
		MinDepth int64    `json:"min_depth"`
	}
	if err := jsonhttp.Read(r, MaxRequestBody, &req); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	if err := a.mayRead(r, roomID); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	if req.Limit <= 0 {
		req.Limit = 10
	}
	evs, err := a.Federation.MissingEvents(r.Context(), roomID, Origin(r.Context()), req.Earliest, req.Latest, min(req.Limit, 100), req.MinDepth)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]any{"events": raws(evs)})
}

// backfill: GET /_matrix/federation/v1/backfill/{roomId}?v=…&limit=.
func (a *API) backfill(w http.ResponseWriter, r *http.Request) {
	roomID := r.PathValue("roomId")
	if err := a.mayRead(r, roomID); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	q := r.URL.Query()
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil || limit <= 0 {
		jsonhttp.Error(w, r, matrix.InvalidParam("limit must be a positive integer"))
		return
	}
	evs, err := a.Federation.Backfill(r.Context(), roomID, Origin(r.Context()), q["v"], min(limit, 100))
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, a.txnShape(evs))
}

// timestampToEvent: GET /_matrix/federation/v1/timestamp_to_event/{roomId}
// ?ts=&dir=, the event of the room closest to ts in that direction, for a
// server in the room (as Synapse, which filters nothing more: the asking
// server then fetches the event with /event, which does).
func (a *API) timestampToEvent(w http.ResponseWriter, r *http.Request) {
	roomID := r.PathValue("roomId")
	if err := a.mayRead(r, roomID); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	q := r.URL.Query()
	ts, err := strconv.ParseInt(q.Get("ts"), 10, 64)
	if err != nil || ts < 0 {
		jsonhttp.Error(w, r, matrix.InvalidParam("ts must be a timestamp in milliseconds"))
		return
	}
	dir := q.Get("dir")
	if dir != "b" && dir != "f" {
		jsonhttp.Error(w, r, matrix.InvalidParam("dir must be b or f"))
		return
	}
	ev, err := a.Rooms.ServerEventAtTimestamp(r.Context(), roomID, ts, dir == "b")
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	pdu, err := a.Rooms.Event(r.Context(), ev)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]any{"event_id": ev.EventID, "origin_server_ts": pdu.OriginServerTS})
}

// invite: PUT /_matrix/federation/v2/invite/{roomId}/{eventId}, an invite
// for a user of this server, signed here and given back.
func (a *API) invite(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var req struct {
		RoomVersion     string            `json:"room_version"`
		Event           json.RawMessage   `json:"event"`
		InviteRoomState []json.RawMessage `json:"invite_room_state"`
	}
	if err := jsonhttp.Read(r, MaxRequestBody, &req); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	rv, ok := event.GetRoomVersion(req.RoomVersion)
	if !ok {
		jsonhttp.Error(w, r, matrix.Errorf(http.StatusBadRequest, matrix.ErrIncompatibleRoomVer, "Room version %q is not supported", req.RoomVersion).With("room_version", req.RoomVersion))
		return
	}
	if len(req.InviteRoomState) > 50 {
		req.InviteRoomState = req.InviteRoomState[:50]
	}
	pdu, err := event.ParsePDU(rv, req.Event)
	if err != nil {
		jsonhttp.Error(w, r, matrix.BadJSON("%s", err.Error()))
		return
	}
	if pdu.RoomID != r.PathValue("roomId") || pdu.EventID != r.PathValue("eventId") {
		jsonhttp.Error(w, r, matrix.BadJSON("The event's room or ID does not match the request"))
		return
	}
	if err := a.Keyring.VerifyEvent(ctx, pdu); err != nil {
		jsonhttp.Error(w, r, matrix.Forbidden("Signature check failed: %s", err.Error()))
		return
	}
	signed, err := a.Rooms.AcceptInvite(ctx, Origin(ctx), rv, pdu, req.InviteRoomState)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]any{"event": json.RawMessage(signed.Raw)})
}
