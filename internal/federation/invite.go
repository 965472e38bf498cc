package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"conclave/internal/event"
	"conclave/internal/fedclient"
	"conclave/internal/matrix"
)

// Invite has the invited user's server sign an invite built here (PUT
// /_matrix/federation/v2/invite): room.Service.InviteRemote.
func (s *Service) Invite(ctx context.Context, rv *event.RoomVersion, invite *event.PDU, strippedState []json.RawMessage) (*event.PDU, error) {
	dest := matrix.ServerOf(*invite.StateKey)
	raw, err := s.Client.InviteV2(ctx, dest, invite.RoomID, invite.EventID, fedInvite(rv, invite, strippedState))
	if err != nil {
		if rerr := remoteError(err); rerr != err {
			return nil, rerr
		}
		return nil, matrix.Errorf(http.StatusBadGateway, matrix.ErrUnknown, "The invited user's server did not sign the invite: %v", err)
	}
	signed, err := event.ParsePDU(rv, raw)
	if err != nil || signed.EventID != invite.EventID {
		return nil, matrix.Errorf(http.StatusBadGateway, matrix.ErrUnknown, "The invited user's server answered another event")
	}
	// Theirs must be there and valid, ours must still be.
	if err := s.Keys.EventSignedBy(ctx, signed, dest); err != nil {
		return nil, matrix.Errorf(http.StatusBadGateway, matrix.ErrUnknown, "The invited user's server's signature fails: %v", err)
	}
	if err := s.Keys.VerifyEvent(ctx, signed); err != nil {
		return nil, matrix.Errorf(http.StatusBadGateway, matrix.ErrUnknown, "The signed invite does not verify: %v", err)
	}
	return signed, nil
}

func fedInvite(rv *event.RoomVersion, invite *event.PDU, stripped []json.RawMessage) fedclient.InviteRequest {
	return fedclient.InviteRequest{RoomVersion: rv.ID, Event: invite.Raw, InviteRoomState: stripped}
}

// LeaveRemote leaves a room this server is not in (a rejected invite, a
// withdrawn knock) through the servers given (Server-Server API, "Leaving
// Rooms (Rejecting Invites)": make_leave, then send_leave v2), and keeps
// the leave as the user's remote membership.
func (s *Service) LeaveRemote(ctx context.Context, roomID, userID string, servers []string, reason string) error {
	var errs []error
	for _, srv := range servers {
		if srv == s.ServerName || srv == "" {
			continue
		}
		err := s.leaveVia(ctx, srv, roomID, userID, reason)
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", srv, err))
	}
	// No server took the leave (none is in the room any more, or none
	// answers): the invite or knock is rejected here alone, with a leave
	// made locally that no other server sees — Synapse's "out-of-band
	// leave", so a user is never stuck with an invite to a dead room
	// (Complement's "Invited user can reject invite over federation for
	// empty room").
	if lerr := s.localLeave(ctx, roomID, userID, reason); lerr != nil {
		s.Log.Info("federation: a local leave after a failed remote one", "room", roomID, "user", userID, "err", lerr)
		if len(errs) == 0 {
			return matrix.NotFound("No known servers to leave room %s through", roomID)
		}
		return matrix.Errorf(http.StatusBadGateway, matrix.ErrUnknown, "No server could take the leave: %v", errors.Join(errs...))
	}
	if len(errs) > 0 {
		s.Log.Info("federation: no server took a leave; rejected locally", "room", roomID, "user", userID, "err", errors.Join(errs...))
	}
	return nil
}

// localLeave records a leave of a remote invite or knock, made and signed
// here, citing the invite or knock as its only prev and auth event; it is
// an outlier no other server is sent.
func (s *Service) localLeave(ctx context.Context, roomID, userID, reason string) error {
	rm, err := s.Rooms.RemoteMembership(ctx, roomID, userID)
	if err != nil {
		return err
	}
	if rm == nil || (rm.Membership != "invite" && rm.Membership != "knock") {
		return errors.New("no invite or knock to reject")
	}
	rv, ok := event.GetRoomVersion(rm.RoomVersion)
	if !ok {
		return fmt.Errorf("room version %q unknown", rm.RoomVersion)
	}
	depth := int64(1)
	if prev, err := s.Rooms.AnyEvent(ctx, rm.Event.EventID); err == nil {
		depth = prev.Depth + 1
	}
	content := map[string]string{"membership": "leave"}
	if reason != "" {
		content["reason"] = reason
	}
	raw, err := json.Marshal(content)
	if err != nil {
		return err
	}
	sk := userID
	pdu, err := (&event.Proto{Type: "m.room.member", StateKey: &sk, Sender: userID, RoomID: roomID, Content: raw,
		PrevEvents: []string{rm.Event.EventID}, AuthEvents: []string{rm.Event.EventID}, Depth: depth, OriginServerTS: nowMillis()}).Build(rv, s.ServerName, s.Key)
	if err != nil {
		return err
	}
	return s.Rooms.RecordRemoteMembership(ctx, rv, pdu, "leave", nil)
}

func (s *Service) leaveVia(ctx context.Context, srv, roomID, userID, reason string) error {
	mm, err := s.Client.MakeLeave(ctx, srv, roomID, userID)
	if err != nil {
		return remoteError(err)
	}
	extra := map[string]json.RawMessage{}
	if reason != "" {
		extra["reason"], _ = json.Marshal(reason)
	}
	rv, pdu, err := s.fromTemplate(mm.RoomVersion, mm.Event, roomID, userID, "leave", extra)
	if err != nil {
		return err
	}
	if err := s.Client.SendLeaveV2(ctx, srv, roomID, pdu.EventID, pdu.Raw); err != nil {
		return remoteError(err)
	}
	return s.Rooms.RecordRemoteMembership(ctx, rv, pdu, "leave", nil)
}

// Knock knocks on a room this server is not in, through the servers given
// (make_knock, send_knock), and keeps the knock with the stripped state the
// resident server answered.
func (s *Service) Knock(ctx context.Context, roomID, userID string, servers []string, reason string) error {
	var errs []error
	for _, srv := range servers {
		if srv == s.ServerName || srv == "" {
			continue
		}
		mm, err := s.Client.MakeKnock(ctx, srv, roomID, userID, SupportedRoomVersions())
		if err != nil {
			if me, ok := remoteError(err).(*matrix.Error); ok {
				return me
			}
			errs = append(errs, err)
			continue
		}
		extra := map[string]json.RawMessage{}
		if reason != "" {
			extra["reason"], _ = json.Marshal(reason)
		}
		rv, pdu, err := s.fromTemplate(mm.RoomVersion, mm.Event, roomID, userID, "knock", extra)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		stripped, err := s.Client.SendKnock(ctx, srv, roomID, pdu.EventID, pdu.Raw)
		if err != nil {
			if me, ok := remoteError(err).(*matrix.Error); ok {
				return me
			}
			errs = append(errs, err)
			continue
		}
		return s.Rooms.RecordRemoteMembership(ctx, rv, pdu, "knock", stripped)
	}
	if len(errs) == 0 {
		return matrix.NotFound("No known servers to knock on room %s through", roomID)
	}
	return matrix.Errorf(http.StatusBadGateway, matrix.ErrUnknown, "No server could take the knock: %v", errors.Join(errs...))
}

// fromTemplate fills in and signs a make_leave or make_knock template.
func (s *Service) fromTemplate(rvID string, tmpl json.RawMessage, roomID, userID, membership string, extra map[string]json.RawMessage) (*event.RoomVersion, *event.PDU, error) {
	rv, ok := event.GetRoomVersion(rvID)
	if !ok || !supported(rv) {
		return nil, nil, matrix.Errorf(http.StatusBadRequest, matrix.ErrIncompatibleRoomVer, "Room version %q is not supported", rvID)
	}
	var t template
	if err := json.Unmarshal(tmpl, &t); err != nil {
		return nil, nil, fmt.Errorf("invalid template: %w", err)
	}
	if t.Type != "m.room.member" || t.StateKey == nil || *t.StateKey != userID || t.Sender != userID || t.RoomID != roomID ||
		len(t.Prev) == 0 || len(t.Prev) > 20 || len(t.Auth) > 10 {
		return nil, nil, errors.New("the template is for another event")
	}
	content := map[string]json.RawMessage{}
	for k, v := range extra {
		content[k] = v
	}
	content["membership"], _ = json.Marshal(membership)
	raw, err := json.Marshal(content)
	if err != nil {
		return nil, nil, err
	}
	sk := userID
	pdu, err := (&event.Proto{Type: "m.room.member", StateKey: &sk, Sender: userID, RoomID: roomID, Content: raw,
		PrevEvents: t.Prev, AuthEvents: t.Auth, Depth: t.Depth, OriginServerTS: nowMillis()}).Build(rv, s.ServerName, s.Key)
	return rv, pdu, err
}
