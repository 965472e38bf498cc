package clientapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"

	"conclave/internal/event"
	"conclave/internal/jsonhttp"
	"conclave/internal/matrix"
	"conclave/internal/notices"
	"conclave/internal/room"
	"conclave/internal/store"
)

func (a *API) registerRooms(mux Mux) {
	handle(mux, "POST", "/createRoom", a.authed(a.perUser(createRoomLimit, a.createRoom)))
	handle(mux, "POST", "/join/{roomIdOrAlias}", a.authed(a.joinByIDOrAlias))
	handle(mux, "POST", "/knock/{roomIdOrAlias}", a.authed(a.knock))
	handle(mux, "POST", "/rooms/{roomId}/join", a.authed(a.joinRoom))
	handle(mux, "POST", "/rooms/{roomId}/invite", a.authed(a.perUser(inviteLimit, a.membershipOf("invite"))))
	handle(mux, "POST", "/rooms/{roomId}/leave", a.authed(a.leave))
	handle(mux, "POST", "/rooms/{roomId}/kick", a.authed(a.membershipOf("kick")))
	handle(mux, "POST", "/rooms/{roomId}/ban", a.authed(a.membershipOf("ban")))
	handle(mux, "POST", "/rooms/{roomId}/unban", a.authed(a.membershipOf("unban")))
	handle(mux, "POST", "/rooms/{roomId}/forget", a.authed(a.forget))
	handle(mux, "PUT", "/rooms/{roomId}/send/{eventType}/{txnId}", a.authed(a.perUser(eventLimit, a.send)))
	handle(mux, "PUT", "/rooms/{roomId}/state/{eventType}", a.authed(a.perUser(eventLimit, a.putState)))
	handle(mux, "PUT", "/rooms/{roomId}/state/{eventType}/{stateKey...}", a.authed(a.perUser(eventLimit, a.putState)))
	handle(mux, "GET", "/rooms/{roomId}/state", a.authed(a.getState))
	handle(mux, "GET", "/rooms/{roomId}/state/{eventType}", a.authed(a.getStateEvent))
	handle(mux, "GET", "/rooms/{roomId}/state/{eventType}/{stateKey...}", a.authed(a.getStateEvent))
	handle(mux, "PUT", "/rooms/{roomId}/redact/{eventId}/{txnId}", a.authed(a.perUser(eventLimit, a.redact)))
	handle(mux, "GET", "/rooms/{roomId}/event/{eventId}", a.authed(a.getEvent))
	handle(mux, "GET", "/joined_rooms", a.authed(a.joinedRooms))
	handle(mux, "GET", "/rooms/{roomId}/members", a.authed(a.members))
	handle(mux, "GET", "/rooms/{roomId}/joined_members", a.authed(a.joinedMembers))
	handle(mux, "GET", "/rooms/{roomId}/messages", a.authed(a.messages))
}

// roomIDParam reads and checks the {roomId} path parameter.
func roomIDParam(r *http.Request) (string, error) {
	id := r.PathValue("roomId")
	if !matrix.ValidRoomID(id) {
		return "", matrix.InvalidParam("Invalid room ID %q", id)
	}
	return id, nil
}

type createRoomBody struct {
	Visibility                string                     `json:"visibility"`
	RoomAliasName             string                     `json:"room_alias_name"`
	Name                      *string                    `json:"name"`
	Topic                     *string                    `json:"topic"`
	Invite                    []string                   `json:"invite"`
	RoomVersion               string                     `json:"room_version"`
	CreationContent           map[string]json.RawMessage `json:"creation_content"`
	InitialState              []room.StateEvent          `json:"initial_state"`
	Preset                    string                     `json:"preset"`
	IsDirect                  bool                       `json:"is_direct"`
	PowerLevelContentOverride map[string]json.RawMessage `json:"power_level_content_override"`
}

func (a *API) createRoom(w http.ResponseWriter, r *http.Request, s *store.Session) {
	var body createRoomBody
	if err := jsonhttp.Read(r, a.maxBody, &body); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	roomID, err := a.Rooms.CreateRoom(r.Context(), &room.CreateRequest{
		Creator: s.UserID, Visibility: body.Visibility, RoomAliasName: body.RoomAliasName,
		Name: body.Name, Topic: body.Topic, Invite: body.Invite, RoomVersion: body.RoomVersion,
		CreationContent: body.CreationContent, InitialState: body.InitialState, Preset: body.Preset,
		IsDirect: body.IsDirect, PowerLevelOverride: body.PowerLevelContentOverride,
	})
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]string{"room_id": roomID})
}

type membershipBody struct {
	UserID string `json:"user_id"`
	Reason string `json:"reason"`
	// An invite by e-mail names an address instead (threepid.go).
	IDServer string `json:"id_server"`
	Medium   string `json:"medium"`
	Address  string `json:"address"`
}

// readOptionalBody decodes a JSON body if one was sent; an empty body is
// allowed for membership endpoints (clients send none).
func (a *API) readOptionalBody(r *http.Request, v any) error {
	body, err := jsonhttp.ReadBody(r, a.maxBody)
	if err != nil {
		return err
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil
	}
	return jsonhttp.Decode(body, v)
}

func (a *API) joinRoom(w http.ResponseWriter, r *http.Request, s *store.Session) {
	roomID, err := roomIDParam(r)
	if err == nil {
		err = a.join(w, r, s, roomID, nil)
	}
	if err != nil {
		jsonhttp.Error(w, r, err)
	}
}

func (a *API) joinByIDOrAlias(w http.ResponseWriter, r *http.Request, s *store.Session) {
	idOrAlias := r.PathValue("roomIdOrAlias")
	var servers []string
	roomID, err := a.resolveRoom(r, idOrAlias)
	if err != nil && a.Federation != nil && strings.HasPrefix(idOrAlias, "#") && matrix.ServerOf(idOrAlias) != a.Config.ServerName {
		roomID, servers, err = a.Federation.ResolveAlias(r.Context(), idOrAlias)
	}
	if err == nil {
		// Servers to join through: those the alias named, then via and
		// server_name (Client-Server API "POST /join/{roomIdOrAlias}"; the
		// spec renamed server_name to via in v1.12, Complement still sends
		// server_name, and Synapse takes both).
		q := r.URL.Query()
		servers = append(append(servers, q["via"]...), q["server_name"]...)
		err = a.join(w, r, s, roomID, servers)
	}
	if err != nil {
		jsonhttp.Error(w, r, err)
	}
}

// resolveRoom turns a room ID or alias into a room ID.
func (a *API) resolveRoom(r *http.Request, idOrAlias string) (string, error) {
	switch {
	case strings.HasPrefix(idOrAlias, "!"):
		if !matrix.ValidRoomID(idOrAlias) {
			return "", matrix.InvalidParam("Invalid room ID")
		}
		return idOrAlias, nil
	case strings.HasPrefix(idOrAlias, "#"):
		if !matrix.ValidAlias(idOrAlias) {
			return "", matrix.InvalidParam("Invalid room alias")
		}
		roomID, _, err := a.Store.GetAlias(r.Context(), idOrAlias)
		if errors.Is(err, store.ErrNotFound) {
			return "", matrix.NotFound("Room alias %s not found", idOrAlias)
		}
		return roomID, err
	}
	return "", matrix.InvalidParam("%q is neither a room ID nor an alias", idOrAlias)
}

// joinBodyKeys are the join body keys the server interprets; any other key
// is custom content copied into the member event, as Synapse does (SyTest
// "POST /join/:room_id can join a room with custom content").
var joinBodyKeys = map[string]bool{"reason": true, "third_party_signed": true, "membership": true, "displayname": true, "avatar_url": true}

func (a *API) join(w http.ResponseWriter, r *http.Request, s *store.Session, roomID string, servers []string) error {
	var body membershipBody
	var extra map[string]json.RawMessage
	if err := a.readOptionalBody(r, &extra); err != nil {
		return err
	}
	if raw, ok := extra["reason"]; ok {
		if err := json.Unmarshal(raw, &body.Reason); err != nil {
			return matrix.BadJSON("reason must be a string")
		}
	}
	for k := range extra {
		if joinBodyKeys[k] {
			delete(extra, k)
		}
	}
	if a.Federation != nil && !a.Rooms.IsResident(r.Context(), roomID) {
		// A room this server is not in: join through the servers given,
		// else the one in the room ID (room versions before 12 name their
		// creator's server there). Servers given are the only ones tried,
		// as Synapse does: the client chose them (Complement's restricted
		// fail-over test expects a join via a server that cannot authorise
		// it to fail).
		if srv := matrix.ServerOf(roomID); srv != "" && len(servers) == 0 {
			servers = append(servers, srv)
		}
		if len(servers) > 0 {
			content := a.Rooms.MemberProfile(r.Context(), s.UserID)
			for k, v := range extra {
				content[k] = v
			}
			if body.Reason != "" {
				content["reason"], _ = json.Marshal(body.Reason)
			}
			if _, err := a.Federation.Join(r.Context(), roomID, s.UserID, dedupe(servers), content); err != nil {
				return err
			}
			jsonhttp.OK(w, map[string]string{"room_id": roomID})
			return nil
		}
	}
	_, err := a.Rooms.SetMembership(r.Context(), &room.MembershipRequest{RoomID: roomID, Sender: s.UserID, DeviceID: s.DeviceID, Target: s.UserID, Membership: "join", Reason: body.Reason, Extra: extra})
	if me, ok := matrix.AsError(err); ok && me.Code == matrix.ErrUnableToAuthoriseJoin && a.Federation != nil {
		// A restricted room no user here can let the user into: another
		// server in the room may (its users who can invite).
		content := a.Rooms.MemberProfile(r.Context(), s.UserID)
		for k, v := range extra {
			content[k] = v
		}
		if body.Reason != "" {
			content["reason"], _ = json.Marshal(body.Reason)
		}
		_, err = a.Federation.JoinResident(r.Context(), roomID, s.UserID, dedupe(servers), content)
	}
	if err != nil {
		return err
	}
	jsonhttp.OK(w, map[string]string{"room_id": roomID})
	return nil
}

// dedupe keeps the first of each string, in order.
func dedupe(in []string) []string {
	out := in[:0:0]
	for _, v := range in {
		if v != "" && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func (a *API) knock(w http.ResponseWriter, r *http.Request, s *store.Session) {
	var body membershipBody
	idOrAlias := r.PathValue("roomIdOrAlias")
	var servers []string
	roomID, err := a.resolveRoom(r, idOrAlias)
	if err != nil && a.Federation != nil && strings.HasPrefix(idOrAlias, "#") && matrix.ServerOf(idOrAlias) != a.Config.ServerName {
		roomID, servers, err = a.Federation.ResolveAlias(r.Context(), idOrAlias)
	}
	if err == nil {
		err = a.readOptionalBody(r, &body)
	}
	if err == nil && a.Federation != nil && !a.Rooms.IsResident(r.Context(), roomID) {
		q := r.URL.Query()
		servers = append(append(append(servers, q["via"]...), q["server_name"]...), matrix.ServerOf(roomID))
		if err = a.Federation.Knock(r.Context(), roomID, s.UserID, dedupe(servers), body.Reason); err == nil {
			jsonhttp.OK(w, map[string]string{"room_id": roomID})
			return
		}
	}
	if err == nil {
		_, err = a.Rooms.SetMembership(r.Context(), &room.MembershipRequest{RoomID: roomID, Sender: s.UserID, DeviceID: s.DeviceID, Target: s.UserID, Membership: "knock", Reason: body.Reason})
	}
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]string{"room_id": roomID})
}

func (a *API) leave(w http.ResponseWriter, r *http.Request, s *store.Session) {
	var body membershipBody
	roomID, err := roomIDParam(r)
	if err == nil {
		err = a.readOptionalBody(r, &body)
	}
	if err == nil && a.Federation != nil && !a.Rooms.IsResident(r.Context(), roomID) {
		// An invite or knock in a room this server is not in: rejected or
		// withdrawn through the server that sent it.
		if rm, rerr := a.Rooms.RemoteMembership(r.Context(), roomID, s.UserID); rerr == nil && rm != nil && (rm.Membership == "invite" || rm.Membership == "knock") {
			servers := []string{matrix.ServerOf(roomID)}
			if ev, err := a.Rooms.AnyEvent(r.Context(), rm.Event.EventID); err == nil {
				servers = append([]string{matrix.ServerOf(ev.Sender)}, servers...)
			}
			if err = a.Federation.LeaveRemote(r.Context(), roomID, s.UserID, dedupe(servers), body.Reason); err == nil {
				jsonhttp.Empty(w)
				return
			}
			jsonhttp.Error(w, r, err)
			return
		}
	}
	if err == nil && a.Notices != nil && a.Notices.IsNoticeRoom(r.Context(), s.UserID, roomID) {
		// The server notices room's invite cannot be rejected (Synapse);
		// once joined, the user may leave.
		if m, merr := a.Rooms.Membership(r.Context(), roomID, s.UserID); merr == nil && m == "invite" {
			err = notices.CannotLeave()
		}
	}
	if err == nil {
		_, err = a.Rooms.SetMembership(r.Context(), &room.MembershipRequest{RoomID: roomID, Sender: s.UserID, DeviceID: s.DeviceID, Target: s.UserID, Membership: "leave", Reason: body.Reason})
	}
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.Empty(w)
}

// membershipOf serves invite, kick, ban and unban: all name a target user.
func (a *API) membershipOf(action string) func(http.ResponseWriter, *http.Request, *store.Session) {
	membership := map[string]string{"invite": "invite", "kick": "leave", "ban": "ban", "unban": "leave"}[action]
	return func(w http.ResponseWriter, r *http.Request, s *store.Session) {
		var body membershipBody
		roomID, err := roomIDParam(r)
		if err == nil {
			err = jsonhttp.Read(r, a.maxBody, &body)
		}
		if err == nil && action == "invite" && body.UserID == "" && (body.Medium != "" || body.Address != "") {
			a.inviteThreepid(w, r, s, roomID, body)
			return
		}
		if err == nil && body.UserID == "" {
			err = matrix.MissingParam("user_id is required")
		}
		if err == nil && !matrix.ValidUserID(body.UserID) {
			err = matrix.InvalidParam("Invalid user_id")
		}
		if err == nil && action == "unban" {
			if m, e := a.Rooms.Membership(r.Context(), roomID, body.UserID); e != nil {
				err = e
			} else if m != "ban" {
				err = matrix.Forbidden("%s is not banned", body.UserID)
			}
		}
		if err == nil && action == "kick" {
			if m, e := a.Rooms.Membership(r.Context(), roomID, body.UserID); e != nil {
				err = e
			} else if m == "" || m == "leave" || m == "ban" {
				err = matrix.Forbidden("%s is not in the room", body.UserID)
			}
		}
		if err == nil {
			_, err = a.Rooms.SetMembership(r.Context(), &room.MembershipRequest{RoomID: roomID, Sender: s.UserID, DeviceID: s.DeviceID, Target: body.UserID, Membership: membership, Reason: body.Reason})
		}
		if err != nil {
			jsonhttp.Error(w, r, err)
			return
		}
		jsonhttp.Empty(w)
	}
}

func (a *API) forget(w http.ResponseWriter, r *http.Request, s *store.Session) {
	roomID, err := roomIDParam(r)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	m, err := a.Rooms.Membership(r.Context(), roomID, s.UserID)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	switch m {
	case "":
		jsonhttp.Error(w, r, matrix.NotFound("You were never in this room"))
		return
	case "join", "invite", "knock":
		jsonhttp.Error(w, r, matrix.Errorf(http.StatusBadRequest, matrix.ErrUnknown, "You must leave the room before forgetting it"))
		return
	}
	if err := a.Rooms.Forget(r.Context(), s.UserID, roomID); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.Empty(w)
}

// maxEventBody bounds message bodies; the PDU limit (65,536 bytes) is
// checked precisely when the event is built.
const maxEventBody = event.MaxPDUSize

func (a *API) send(w http.ResponseWriter, r *http.Request, s *store.Session) {
	roomID, err := roomIDParam(r)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	content, err := jsonhttp.ReadObject(r, maxEventBody)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	typ := r.PathValue("eventType")
	req := &room.SendRequest{RoomID: roomID, Sender: s.UserID, DeviceID: s.DeviceID, TxnID: r.PathValue("txnId"), Type: typ, Content: content}
	if typ == "m.room.redaction" {
		var c struct {
			Redacts string `json:"redacts"`
		}
		json.Unmarshal(content, &c)
		req.Redacts = c.Redacts
	}
	id, err := a.Rooms.Send(r.Context(), req)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]string{"event_id": id})
}

func (a *API) putState(w http.ResponseWriter, r *http.Request, s *store.Session) {
	roomID, err := roomIDParam(r)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	content, err := jsonhttp.ReadObject(r, maxEventBody)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	typ, key := r.PathValue("eventType"), r.PathValue("stateKey")
	var id string
	if typ == "m.room.member" {
		// Membership through the state API goes through the same checks.
		var c struct {
			Membership string `json:"membership"`
			Reason     string `json:"reason"`
		}
		if err := json.Unmarshal(content, &c); err != nil || c.Membership == "" {
			jsonhttp.Error(w, r, matrix.BadJSON("m.room.member content needs a membership string"))
			return
		}
	}
	id, err = a.Rooms.Send(r.Context(), &room.SendRequest{RoomID: roomID, Sender: s.UserID, DeviceID: s.DeviceID, Type: typ, StateKey: &key, Content: content})
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]string{"event_id": id})
}

func (a *API) getState(w http.ResponseWriter, r *http.Request, s *store.Session) {
	roomID, err := roomIDParam(r)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	pdus, err := a.Rooms.StateForUser(r.Context(), roomID, s.UserID)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	out := make([]json.RawMessage, 0, len(pdus))
	for _, p := range pdus {
		out = append(out, event.AppendClientEvent(nil, p, nil))
	}
	jsonhttp.OK(w, out)
}

func (a *API) getStateEvent(w http.ResponseWriter, r *http.Request, s *store.Session) {
	roomID, err := roomIDParam(r)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	typ, key := r.PathValue("eventType"), r.PathValue("stateKey")
	pdus, err := a.Rooms.StateForUser(r.Context(), roomID, s.UserID)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	for _, p := range pdus {
		if p.Type == typ && p.StateKeyIs(key) {
			if r.URL.Query().Get("format") == "event" {
				jsonhttp.OK(w, json.RawMessage(event.AppendClientEvent(nil, p, nil)))
			} else {
				jsonhttp.OK(w, p.Content)
			}
			return
		}
	}
	jsonhttp.Error(w, r, matrix.NotFound("Event not found"))
}

func (a *API) redact(w http.ResponseWriter, r *http.Request, s *store.Session) {
	roomID, err := roomIDParam(r)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	var body struct {
		Reason *string `json:"reason"`
	}
	if err := a.readOptionalBody(r, &body); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	target := r.PathValue("eventId")
	content := map[string]any{}
	if body.Reason != nil {
		content["reason"] = *body.Reason
	}
	rv, err := a.Rooms.RoomVersion(r.Context(), roomID)
	if err != nil {
		jsonhttp.Error(w, r, matrix.Forbidden("Unknown room or not a member"))
		return
	}
	if rv.RedactsInContent {
		content["redacts"] = target
	}
	raw, _ := json.Marshal(content)
	id, err := a.Rooms.Send(r.Context(), &room.SendRequest{RoomID: roomID, Sender: s.UserID, DeviceID: s.DeviceID, TxnID: r.PathValue("txnId"), Type: "m.room.redaction", Content: raw, Redacts: target})
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]string{"event_id": id})
}

func (a *API) getEvent(w http.ResponseWriter, r *http.Request, s *store.Session) {
	roomID, err := roomIDParam(r)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	se, err := a.Rooms.EventForUser(r.Context(), roomID, r.PathValue("eventId"), s.UserID)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	evs, err := a.Rooms.ClientEvents(r.Context(), []store.StoredEvent{*se}, s.UserID, s.DeviceID, true)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, evs[0])
}

func (a *API) joinedRooms(w http.ResponseWriter, r *http.Request, s *store.Session) {
	ms, err := a.Store.UserMemberships(r.Context(), s.UserID)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		if m.Membership == "join" {
			out = append(out, m.RoomID)
		}
	}
	jsonhttp.OK(w, map[string]any{"joined_rooms": out})
}

func (a *API) joinedMembers(w http.ResponseWriter, r *http.Request, s *store.Session) {
	roomID, err := roomIDParam(r)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	vis, err := a.Rooms.CanRead(r.Context(), roomID, s.UserID)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	if vis.Current() != "join" && !vis.WorldReadable() {
		jsonhttp.Error(w, r, matrix.Forbidden("You are not a member of this room"))
		return
	}
	state, err := a.Rooms.CurrentState(r.Context(), roomID)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	joined := map[string]any{}
	for _, p := range state {
		if p.Type != "m.room.member" || p.StateKey == nil {
			continue
		}
		var c struct {
			Membership  string  `json:"membership"`
			DisplayName *string `json:"displayname"`
			AvatarURL   *string `json:"avatar_url"`
		}
		json.Unmarshal(p.Content, &c)
		if c.Membership == "join" {
			joined[*p.StateKey] = map[string]*string{"display_name": c.DisplayName, "avatar_url": c.AvatarURL}
		}
	}
	jsonhttp.OK(w, map[string]any{"joined": joined})
}
