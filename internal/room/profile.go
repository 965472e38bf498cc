package room

import (
	"context"
	"encoding/json"

	"conclave/internal/event"
	"conclave/internal/store"
)

// UpdateProfile sends a fresh m.room.member join event, carrying the user's
// current display name and avatar, into every room the user is joined to.
// Rooms are handled one at a time under their own writer locks.
func (s *Service) UpdateProfile(ctx context.Context, userID string) error {
	ms, err := s.store.UserMemberships(ctx, userID)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if m.Membership != "join" {
			continue
		}
		if err := s.retry(ctx, m.RoomID, func() error { return s.refreshMember(ctx, m.RoomID, userID) }); err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) refreshMember(ctx context.Context, roomID, userID string) error {
	e, rs, err := s.lock(ctx, roomID)
	if err != nil {
		return err
	}
	defer s.unlock(e)
	cur := rs.StateEvent("m.room.member", userID)
	if cur == nil || membershipOf(cur) != "join" {
		return nil
	}
	var content map[string]json.RawMessage
	if err := json.Unmarshal(cur.Content, &content); err != nil {
		return err
	}
	delete(content, "displayname")
	delete(content, "avatar_url")
	c := map[string]any{}
	for k, v := range content {
		c[k] = v
	}
	s.addProfile(ctx, userID, c)
	raw, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if jsonEqual(raw, cur.Content) {
		return nil
	}
	target := userID
	pdu, err := s.build(ctx, rs, &event.Proto{Type: "m.room.member", StateKey: &target, Sender: userID, Content: raw})
	if err != nil {
		return err
	}
	return s.commit(ctx, rs, []*event.PDU{pdu}, []store.NewEvent{newEvent(rs, pdu, "", "")})
}

// LeaveAll makes the user leave (or reject) every room they are joined to,
// invited to or knocking on; used when an account is deactivated.
func (s *Service) LeaveAll(ctx context.Context, userID string) error {
	ms, err := s.store.UserMemberships(ctx, userID)
	if err != nil {
		return err
	}
	for _, m := range ms {
		switch m.Membership {
		case "join", "invite", "knock":
			if _, err := s.SetMembership(ctx, &MembershipRequest{RoomID: m.RoomID, Sender: userID, Target: userID, Membership: "leave"}); err != nil {
				return err
			}
		}
	}
	return nil
}
