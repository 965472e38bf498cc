package room

import (
	"context"
	"encoding/json"
	"errors"

	"conclave/internal/authrules"
	"conclave/internal/changes"
	"conclave/internal/event"
	"conclave/internal/matrix"
	"conclave/internal/store"
)

// Invites across servers (Server-Server API, "Inviting to a room"): the
// invited user's server signs the invite before the inviting server sends
// it into the room. A user invited to a room this server is not in has the
// invite as a "remote membership": the event (an outlier), the stripped
// state the inviting server sent, and a membership that /sync shows like any
// other. Rejecting it (a leave built through the inviting server) is stored
// the same way.

// InviteRemote, when set, has another server's user sign an invite built
// here (federation's /invite): it returns the event with their signature.
type InviteRemote func(ctx context.Context, rv *event.RoomVersion, invite *event.PDU, strippedState []json.RawMessage) (*event.PDU, error)

// AcceptInvite answers an invite another server sends for a user of this
// server: it checks the event, signs it, and, when this server is not in
// the room, keeps it as the user's remote membership (shown by /sync with
// strippedState). The signed event is returned to the inviting server.
func (s *Service) AcceptInvite(ctx context.Context, origin string, rv *event.RoomVersion, pdu *event.PDU, strippedState []json.RawMessage) (*event.PDU, error) {
	if pdu.Type != "m.room.member" || pdu.StateKey == nil {
		return nil, matrix.BadJSON("Not an m.room.member event")
	}
	if m, err := authrules.Membership(pdu); err != nil || m != "invite" {
		return nil, matrix.BadJSON("Not an invite")
	}
	target := *pdu.StateKey
	if matrix.ServerOf(target) != s.serverName {
		return nil, matrix.BadJSON("The invited user is not on this server")
	}
	if matrix.ServerOf(pdu.Sender) != origin {
		return nil, matrix.Forbidden("The inviter is not on the requesting server")
	}
	signed, err := pdu.WithSignature(s.serverName, s.key)
	if err != nil {
		return nil, matrix.BadJSON("%s", err.Error())
	}
	if s.IsResident(ctx, pdu.RoomID) {
		// The inviting server sends it into the room, where this server
		// takes it like any event.
		return signed, nil
	}
	stripped, err := json.Marshal(nonNil(strippedState))
	if err != nil {
		return nil, err
	}
	if err := s.persistRemote(ctx, &store.RemoteMembership{RoomID: pdu.RoomID, UserID: target, RoomVersion: rv.ID, Membership: "invite",
		Event: receivedRow(&roomState{roomID: pdu.RoomID}, signed, nil), StrippedState: stripped}); err != nil {
		return nil, err
	}
	return signed, nil
}

func nonNil(l []json.RawMessage) []json.RawMessage {
	if l == nil {
		return []json.RawMessage{}
	}
	return l
}

// RecordRemoteMembership keeps a membership of a local user in a room this
// server is not in (a rejected invite, a knock), built and sent through
// another server.
func (s *Service) RecordRemoteMembership(ctx context.Context, rv *event.RoomVersion, pdu *event.PDU, membership string, strippedState []json.RawMessage) error {
	stripped, err := json.Marshal(nonNil(strippedState))
	if err != nil {
		return err
	}
	return s.persistRemote(ctx, &store.RemoteMembership{RoomID: pdu.RoomID, UserID: *pdu.StateKey, RoomVersion: rv.ID, Membership: membership,
		Event: receivedRow(&roomState{roomID: pdu.RoomID}, pdu, nil), StrippedState: stripped})
}

func (s *Service) persistRemote(ctx context.Context, m *store.RemoteMembership) error {
	w := s.Changes.Begin(changes.Key{Kind: changes.Memberships, Subject: m.UserID})
	pos, err := s.store.PersistRemoteMembership(w.Context(ctx), m)
	if err != nil {
		w.Done(0)
		return err
	}
	w.Done(pos)
	if s.Notify != nil {
		s.Notify(Notice{RoomID: m.RoomID, Pos: pos, Users: []string{m.UserID}, Members: []string{m.UserID}})
	}
	return nil
}

// RemoteMembership returns a local user's membership in a room this server
// is not in, if the last one is such (nil otherwise).
func (s *Service) RemoteMembership(ctx context.Context, roomID, userID string) (*store.RemoteMembership, error) {
	m, err := s.store.GetRemoteMembership(ctx, roomID, userID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	return m, err
}
