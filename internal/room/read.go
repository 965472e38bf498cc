package room

import (
	"context"
	"errors"

	"conclave/internal/event"
	"conclave/internal/matrix"
	"conclave/internal/store"
)

// CurrentState returns the room's current state events.
func (s *Service) CurrentState(ctx context.Context, roomID string) ([]*event.PDU, error) {
	e, rs, err := s.lock(ctx, roomID)
	if err != nil {
		return nil, err
	}
	defer s.unlock(e)
	out := make([]*event.PDU, 0, len(rs.state))
	for _, p := range rs.state {
		out = append(out, p)
	}
	return out, nil
}

// CurrentStateEvent returns one current state event, or nil.
func (s *Service) CurrentStateEvent(ctx context.Context, roomID, typ, key string) (*event.PDU, error) {
	e, rs, err := s.lock(ctx, roomID)
	if err != nil {
		return nil, err
	}
	defer s.unlock(e)
	return rs.StateEvent(typ, key), nil
}

// Membership returns the user's current membership in a room ("" if none
// or the room is unknown).
func (s *Service) Membership(ctx context.Context, roomID, userID string) (string, error) {
	e, rs, err := s.lock(ctx, roomID)
	if err == errUnknownRoom {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer s.unlock(e)
	return rs.membership(userID), nil
}

// IsJoined reports whether the user is joined to the room now.
func (s *Service) IsJoined(ctx context.Context, roomID, userID string) (bool, error) {
	m, err := s.Membership(ctx, roomID, userID)
	return m == "join", err
}

// JoinedMembers lists the users joined to a room now.
func (s *Service) JoinedMembers(ctx context.Context, roomID string) ([]string, error) {
	e, rs, err := s.lock(ctx, roomID)
	if err != nil {
		return nil, err
	}
	defer s.unlock(e)
	return rs.joinedUsers(nil), nil
}

// StateForUser returns the room state a user may see: the current state if
// they are joined (or the room is world readable), the state when they left
// if they left, M_FORBIDDEN otherwise. Spec: GET /rooms/{roomId}/state.
func (s *Service) StateForUser(ctx context.Context, roomID, userID string) ([]*event.PDU, error) {
	vis, err := s.Visibility(ctx, roomID, userID)
	if err != nil {
		return nil, err
	}
	if _, err := s.RoomVersion(ctx, roomID); err != nil {
		if err == errUnknownRoom {
			return nil, matrix.Forbidden("You are not a member of this room")
		}
		return nil, err
	}
	switch {
	case vis.Current() == "join" || vis.WorldReadable():
		return s.CurrentState(ctx, roomID)
	case (vis.Current() == "leave" || vis.Current() == "ban") && vis.EverJoined():
		// The state as it was when they left.
		if err := s.checkForgotten(ctx, vis, roomID, userID); err != nil {
			return nil, err
		}
		return s.StateAt(ctx, roomID, vis.LastPos())
	}
	return nil, matrix.Forbidden("You are not a member of this room")
}

// StateAt returns the state after the event at pos.
func (s *Service) StateAt(ctx context.Context, roomID string, pos int64) ([]*event.PDU, error) {
	rows, err := s.store.StateAt(ctx, roomID, pos)
	if err != nil {
		return nil, err
	}
	return s.Parse(ctx, rows)
}

// Parse turns stored events into PDUs (cached), in the same order.
func (s *Service) Parse(ctx context.Context, rows []store.StoredEvent) ([]*event.PDU, error) {
	out := make([]*event.PDU, 0, len(rows))
	for i := range rows {
		p, err := s.Event(ctx, &rows[i])
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// EventForUser returns an event if the user may see it; M_NOT_FOUND
// otherwise (unknown, another room, or hidden by history visibility).
func (s *Service) EventForUser(ctx context.Context, roomID, eventID, userID string) (*store.StoredEvent, error) {
	se, err := s.store.GetEvent(ctx, eventID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && se.RoomID != roomID) {
		return nil, matrix.NotFound("Event not found")
	}
	if err != nil {
		return nil, err
	}
	vis, err := s.Visibility(ctx, roomID, userID)
	if err != nil {
		return nil, err
	}
	if err := s.checkForgotten(ctx, vis, roomID, userID); err != nil {
		return nil, err
	}
	if !vis.CanSee(se.Pos, se) {
		return nil, matrix.NotFound("Event not found")
	}
	return se, nil
}

// CanRead checks that the user may read a room at all (joined now, was a
// member once, or the room is world readable) and returns the visibility.
func (s *Service) CanRead(ctx context.Context, roomID, userID string) (*Visibility, error) {
	if _, err := s.RoomVersion(ctx, roomID); err != nil {
		if err == errUnknownRoom {
			return nil, matrix.Forbidden("You are not a member of this room")
		}
		return nil, err
	}
	vis, err := s.Visibility(ctx, roomID, userID)
	if err != nil {
		return nil, err
	}
	if vis.Current() == "" && !vis.WorldReadable() {
		return nil, matrix.Forbidden("You are not a member of this room")
	}
	if err := s.checkForgotten(ctx, vis, roomID, userID); err != nil {
		return nil, err
	}
	return vis, nil
}

// checkForgotten refuses a user who forgot a room they left: they no longer
// read its history or state (spec: POST /rooms/{roomId}/forget), on every
// read path alike. A world-readable room stays readable to anyone.
func (s *Service) checkForgotten(ctx context.Context, vis *Visibility, roomID, userID string) error {
	if cur := vis.Current(); (cur != "leave" && cur != "ban") || vis.WorldReadable() {
		return nil
	}
	forgotten, err := s.store.IsForgotten(ctx, userID, roomID)
	if err != nil {
		return err
	}
	if forgotten {
		return matrix.Forbidden("You have forgotten this room")
	}
	return nil
}
