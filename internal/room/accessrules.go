package room

import (
	"context"
	"errors"

	"conclave/internal/accessrules"
	"conclave/internal/event"
	"conclave/internal/matrix"
	"conclave/internal/store"
)

// checkAccessRules asks the access rules (internal/accessrules) about an
// event against the room's current state: for a local event, before it is
// written; for a received one, where the spec's third check (the current
// state) soft-fails it.
func (s *Service) checkAccessRules(ctx context.Context, rs *roomState, pdu *event.PDU) error {
	if s.AccessRules == nil {
		return nil
	}
	return s.AccessRules.Check(pdu, rulesView{rs: rs, published: func() bool {
		r, err := s.store.GetRoom(ctx, rs.roomID)
		if errors.Is(err, store.ErrNotFound) {
			return false // a room being created
		}
		// A room that cannot be read counts as published: the change it
		// would allow waits rather than slips through.
		return err != nil || r.Public
	}})
}

// rulesView is a room's current state as the access rules read it.
type rulesView struct {
	rs        *roomState
	published func() bool
}

func (v rulesView) StateEvent(typ, key string) *event.PDU { return v.rs.StateEvent(typ, key) }
func (v rulesView) Published() bool                       { return v.published() }

// StateKeysOf lists the state keys of the type's state events with a
// non-empty content (bounded by the room's state, asked of direct rooms).
func (v rulesView) StateKeysOf(typ string) []string {
	var out []string
	for k, ev := range v.rs.state {
		if k.typ == typ && len(ev.Content) > 2 {
			out = append(out, k.key)
		}
	}
	return out
}

// publishRestricted lists a room in the public directory if its access
// rule is restricted, under the room's writer lock: the rules refuse a rule
// change in a listed room, and that check runs under the same lock.
func (s *Service) publishRestricted(ctx context.Context, roomID string) error {
	e, rs, err := s.lock(ctx, roomID)
	if err != nil {
		if err == errUnknownRoom {
			return matrix.NotFound("Unknown room")
		}
		return err
	}
	defer s.unlock(e)
	if err := accessrules.CanPublish(rulesView{rs: rs}); err != nil {
		return err
	}
	if err := s.store.SetRoomPublic(ctx, roomID, true); errors.Is(err, store.ErrNotFound) {
		return matrix.NotFound("Unknown room")
	} else if err != nil {
		return err
	}
	return nil
}

// adminLevel is the power level of a room admin.
const adminLevel = 100

// checkLastAdmin refuses the leave of a room's last admin while other
// members are joined, in rooms under the access rules (those carrying
// im.vector.room.access_rules, Tchap's): the room would be left without
// anyone able to manage it. The admin hands power over first (issue 12).
// Only a local user's own leave is refused: a kick or ban says the room's
// admins decided, and received events follow the room's authorisation
// rules alone.
func (s *Service) checkLastAdmin(rs *roomState, userID string) error {
	if s.AccessRules == nil || rs.StateEvent(accessrules.EventType, "") == nil {
		return nil
	}
	pl, err := rs.powerLevels()
	if err != nil || pl.UserLevel(userID) < adminLevel {
		return nil
	}
	others := false
	for u := range rs.joined {
		if u == userID {
			continue
		}
		if pl.UserLevel(u) >= adminLevel {
			return nil
		}
		others = true
	}
	if !others {
		return nil // the last member may go
	}
	return matrix.Forbidden("You are the last administrator of this room: make another member administrator before leaving")
}
