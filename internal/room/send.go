package room

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"conclave/internal/authrules"
	"conclave/internal/event"
	"conclave/internal/matrix"
	"conclave/internal/store"
)

// SendRequest is an event a local user sends into a room: a message event
// (StateKey nil) or a state event.
type SendRequest struct {
	RoomID   string
	Sender   string
	DeviceID string
	TxnID    string // "" for requests without transaction IDs (state PUT)
	Type     string
	StateKey *string
	Content  json.RawMessage
	Redacts  string // for m.room.redaction
}

// Send builds, authorises and persists one event and returns its ID. A
// repeated transaction ID from the same device returns the first event's ID.
// A write that loses a race with another process is rebuilt (see retry); the
// transaction ID is looked up again before each attempt, so a retry never
// duplicates an event the same transaction already produced.
func (s *Service) Send(ctx context.Context, req *SendRequest) (string, error) {
	if req.Type == "m.room.create" {
		// A room has one create event, its first (auth rules: m.room.create
		// must have no prev_events); Synapse answers 400 M_INVALID_PARAM.
		return "", matrix.InvalidParam("m.room.create cannot be sent into an existing room")
	}
	var id string
	err := s.retry(ctx, req.RoomID, func() (err error) {
		id, err = s.sendOnce(ctx, req)
		return err
	})
	return id, err
}

func (s *Service) sendOnce(ctx context.Context, req *SendRequest) (string, error) {
	if req.TxnID != "" {
		if id, err := s.store.EventByTxn(ctx, req.Sender, req.DeviceID, req.RoomID, req.TxnID); err == nil {
			s.wakeFed(ctx, req.RoomID)
			return id, nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return "", err
		}
	}
	e, rs, err := s.lock(ctx, req.RoomID)
	if err != nil {
		return "", s.unknownRoomFor(err)
	}
	defer s.unlock(e)

	// Sending the same state again changes nothing: answer with the current
	// event instead of creating a duplicate, as Synapse does.
	if req.StateKey != nil {
		if cur := rs.StateEvent(req.Type, *req.StateKey); cur != nil && cur.Sender == req.Sender && jsonEqual(cur.Content, req.Content) {
			s.wakeFedLocked(rs) // maybe the retry of a request whose write committed
			return cur.EventID, nil
		}
	}
	if req.Type == "m.room.redaction" {
		if err := s.checkRedaction(ctx, rs, req.Sender, req.Redacts); err != nil {
			return "", err
		}
	}
	if s.RequireEncryption && req.Type == "m.room.encryption" && req.StateKey != nil && *req.StateKey == "" {
		var c struct {
			Algorithm string `json:"algorithm"`
		}
		if json.Unmarshal(req.Content, &c) != nil || c.Algorithm != MegolmAlgorithm {
			return "", matrix.Forbidden("This server requires %s end-to-end encryption", MegolmAlgorithm)
		}
	}
	if req.Type == "m.room.retention" {
		if err := checkRetention(req.Content); err != nil {
			return "", err
		}
	}
	if req.Type == "m.room.canonical_alias" && req.StateKey != nil && *req.StateKey == "" {
		if err := s.checkCanonicalAlias(ctx, rs.roomID, req.Content); err != nil {
			return "", err
		}
	}
	if req.Type == "m.room.member" && req.StateKey != nil && *req.StateKey == req.Sender && rs.membership(req.Sender) == "join" {
		var m struct {
			Membership string `json:"membership"`
		}
		if json.Unmarshal(req.Content, &m) == nil && m.Membership == "leave" {
			if err := s.checkLastAdmin(rs, req.Sender); err != nil {
				return "", err
			}
		}
	}
	content := req.Content
	if req.Type == "m.room.member" && req.StateKey != nil && *req.StateKey == req.Sender {
		if content, err = s.memberJoinContent(ctx, rs, req.Sender, content); err != nil {
			return "", err
		}
	}
	proto := &event.Proto{Type: req.Type, StateKey: req.StateKey, Sender: req.Sender, Content: content, Redacts: req.Redacts}
	pdu, err := s.build(ctx, rs, proto)
	if err != nil {
		if me, ok := matrix.AsError(err); ok && me.Code == matrix.ErrForbidden && rs.membership(req.Sender) != "join" && req.Type != "m.room.member" {
			return "", matrix.Forbidden("User %s is not in room %s", req.Sender, req.RoomID)
		}
		return "", err
	}
	row := newEvent(rs, pdu, req.DeviceID, req.TxnID)
	if err := s.commit(ctx, rs, []*event.PDU{pdu}, []store.NewEvent{row}); err != nil {
		if errors.Is(err, store.ErrConflict) && req.TxnID != "" {
			// The same transaction won a race on another connection.
			if id, err2 := s.store.EventByTxn(ctx, req.Sender, req.DeviceID, req.RoomID, req.TxnID); err2 == nil {
				return id, nil
			}
		}
		return "", err
	}
	return pdu.EventID, nil
}

// unknownRoomFor keeps an unknown room from being distinguishable from a
// room the user may not see: both are 403 for senders, as Synapse answers.
func (s *Service) unknownRoomFor(err error) error {
	if err == errUnknownRoom {
		return matrix.Forbidden("Unknown room or not a member")
	}
	return err
}

// checkRedaction enforces at creation what the spec checks when serving a
// redaction (room versions 3+): a user may redact their own events, or any
// event in the room with the "redact" power level.
func (s *Service) checkRedaction(ctx context.Context, rs *roomState, sender, target string) error {
	if !matrix.ValidEventID(target) {
		return matrix.BadJSON("Invalid event ID to redact")
	}
	se, err := s.store.GetEvent(ctx, target)
	if err == nil && se.RoomID != rs.roomID {
		return matrix.NotFound("Event not found")
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if err == nil && se.Sender == sender {
		return nil
	}
	pl, perr := rs.powerLevels()
	if perr != nil {
		return perr
	}
	if pl.UserLevel(sender) >= pl.Redact() {
		// A user with the redact level may redact an event this server
		// never received (another server's event that did not reach us):
		// the redaction goes out and applies wherever the event is, as
		// Synapse sends it (the spec's redaction rules are checked where
		// the event is served, room versions 3+).
		return nil
	}
	if err != nil {
		return matrix.NotFound("Event not found")
	}
	return matrix.Forbidden("You may not redact other users' events")
}

func jsonEqual(a, b json.RawMessage) bool {
	if bytes.Equal(a, b) {
		return true
	}
	ca, err1 := event.CanonicalJSON(a, false)
	cb, err2 := event.CanonicalJSON(b, false)
	return err1 == nil && err2 == nil && bytes.Equal(ca, cb)
}

// MembershipRequest changes a user's membership in a room.
type MembershipRequest struct {
	RoomID     string
	Sender     string
	DeviceID   string
	Target     string
	Membership string // join, invite, leave, ban, knock
	Reason     string
	// Extra content keys (is_direct, third-party signed…).
	Extra map[string]json.RawMessage
}

// SetMembership sends an m.room.member event: join, leave, invite, kick
// (leave of another user), ban, unban (leave of a banned user) or knock.
func (s *Service) SetMembership(ctx context.Context, req *MembershipRequest) (string, error) {
	if !matrix.ValidUserID(req.Target) {
		return "", matrix.InvalidParam("Invalid user ID %q", req.Target)
	}
	var id string
	err := s.retry(ctx, req.RoomID, func() (err error) {
		id, err = s.setMembershipOnce(ctx, req)
		return err
	})
	return id, err
}

func (s *Service) setMembershipOnce(ctx context.Context, req *MembershipRequest) (string, error) {
	e, rs, err := s.lock(ctx, req.RoomID)
	if err != nil {
		if err == errUnknownRoom {
			if req.Membership == "join" || req.Membership == "knock" {
				return "", matrix.NotFound("No known servers to join room %s through", req.RoomID)
			}
			return "", matrix.Forbidden("Unknown room or not a member")
		}
		return "", err
	}
	defer s.unlock(e)

	cur := rs.membership(req.Target)
	switch req.Membership {
	case "join":
		if cur == "join" {
			// Already joined: nothing to change, answer with the room. Maybe
			// the retry of a join whose write committed: see wakeFed.
			s.wakeFedLocked(rs)
			return rs.StateEvent("m.room.member", req.Target).EventID, nil
		}
	case "leave":
		if req.Target == req.Sender && cur == "" {
			return "", matrix.Forbidden("You are not a member of this room")
		}
		if req.Target == req.Sender && cur == "join" {
			if err := s.checkLastAdmin(rs, req.Sender); err != nil {
				return "", err
			}
		}
	case "invite":
		if cur == "join" {
			return "", matrix.Forbidden("%s is already in the room", req.Target)
		}
		if cur == "ban" {
			return "", matrix.Forbidden("%s is banned from the room", req.Target)
		}
	}
	content := map[string]any{"membership": req.Membership}
	for k, v := range req.Extra {
		if k != "membership" {
			content[k] = v
		}
	}
	if req.Reason != "" {
		content["reason"] = req.Reason
	}
	if req.Membership == "join" || req.Membership == "invite" || req.Membership == "knock" {
		s.addProfile(ctx, req.Target, content)
	}
	if req.Membership == "join" {
		if err := s.authoriseJoin(ctx, rs, req.Target, content); err != nil {
			return "", err
		}
	}
	raw, err := json.Marshal(content)
	if err != nil {
		return "", matrix.BadJSON("%s", err.Error())
	}
	target := req.Target
	proto := &event.Proto{Type: "m.room.member", StateKey: &target, Sender: req.Sender, Content: raw}
	pdu, err := s.build(ctx, rs, proto)
	if err != nil {
		return "", err
	}
	if req.Membership == "invite" && s.InviteRemote != nil && matrix.ServerOf(target) != s.serverName {
		// The invited user's server signs the invite first (Server-Server
		// API, "Inviting to a room").
		signed, err := s.InviteRemote(ctx, rs.version, pdu, s.strippedOf(rs))
		if err != nil {
			return "", err
		}
		if signed.EventID != pdu.EventID {
			return "", matrix.Errorf(http.StatusBadGateway, matrix.ErrUnknown, "The invited user's server changed the invite")
		}
		pdu = signed
	}
	row := newEvent(rs, pdu, req.DeviceID, "")
	if err := s.commit(ctx, rs, []*event.PDU{pdu}, []store.NewEvent{row}); err != nil {
		return "", err
	}
	return pdu.EventID, nil
}

// PowerLevels returns the current power levels of a room.
func (s *Service) PowerLevels(ctx context.Context, roomID string) (*authrules.PowerLevels, error) {
	e, rs, err := s.lock(ctx, roomID)
	if err != nil {
		return nil, err
	}
	defer s.unlock(e)
	return rs.powerLevels()
}

// ErrNotAllowed is returned for operations refused to a user.
var ErrNotAllowed = matrix.Errorf(http.StatusForbidden, matrix.ErrForbidden, "Not allowed")

// checkCanonicalAlias refuses an m.room.canonical_alias whose aliases are
// malformed (M_INVALID_PARAM) or, for this server's aliases, do not exist or
// point to another room (M_BAD_ALIAS), as Synapse does (Client-Server API,
// "m.room.canonical_alias": servers should validate local aliases).
func (s *Service) checkCanonicalAlias(ctx context.Context, roomID string, content json.RawMessage) error {
	var c struct {
		Alias      *string         `json:"alias"`
		AltAliases json.RawMessage `json:"alt_aliases"`
	}
	if err := json.Unmarshal(content, &c); err != nil {
		return matrix.InvalidParam("m.room.canonical_alias content has the wrong shape")
	}
	var aliases []string
	if c.Alias != nil && *c.Alias != "" {
		aliases = append(aliases, *c.Alias)
	}
	if len(c.AltAliases) > 0 && string(c.AltAliases) != "null" {
		var alt []string
		if err := json.Unmarshal(c.AltAliases, &alt); err != nil {
			return matrix.InvalidParam("alt_aliases must be a list of aliases")
		}
		aliases = append(aliases, alt...)
	}
	if len(aliases) > 100 {
		return matrix.InvalidParam("Too many alt_aliases")
	}
	for _, a := range aliases {
		if !matrix.ValidAlias(a) {
			return matrix.InvalidParam("Invalid alias %q", a)
		}
		if matrix.ServerOf(a) != s.serverName {
			continue // remote aliases cannot be checked without federation
		}
		target, _, err := s.store.GetAlias(ctx, a)
		if errors.Is(err, store.ErrNotFound) || (err == nil && target != roomID) {
			return matrix.Errorf(http.StatusBadRequest, matrix.ErrBadAlias, "Alias %s does not point to this room", a)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// MegolmAlgorithm is the room encryption algorithm clients use today.
const MegolmAlgorithm = "m.megolm.v1.aes-sha2"

// JoinRuleOf reads the room's current join rule ("" if none).
func JoinRuleOf(rs *roomState) string {
	jr, _ := authrules.JoinRule(rs.StateEvent("m.room.join_rules", ""))
	return jr
}

func encrypted(rs *roomState) bool {
	ev := rs.StateEvent("m.room.encryption", "")
	if ev == nil {
		return false
	}
	var c struct {
		Algorithm string `json:"algorithm"`
	}
	return json.Unmarshal(ev.Content, &c) == nil && c.Algorithm != ""
}
