package push

import (
	"context"
	"errors"
	"slices"
	"strings"
)

// errUnchanged ends a modify without writing.
var errUnchanged = errors.New("push: nothing to change")

// CopyRoomRules gives a user who joins an upgraded room the rules they had
// for the room it replaces (Client-Server API, "Room upgrades": the server
// should transfer the user's notification settings): the room rule named
// after the old room, and override or underride rules matching its room_id
// and named after it, each copied once under the new room's ID, placed just
// before the original. Nothing is written when there is nothing to copy.
func (s *Service) CopyRoomRules(ctx context.Context, userID, oldRoomID, newRoomID string) error {
	err := s.modify(ctx, userID, func(rs *Ruleset) error {
		changed := false
		for _, kind := range []string{"override", "room", "underride"} {
			l := rs.List(kind)
			lo, hi := UserRules(kind, *l)
			for i := hi - 1; i >= lo; i-- {
				r := (*l)[i]
				if !strings.Contains(r.RuleID, oldRoomID) || (kind != "room" && !matchesRoom(r, oldRoomID)) {
					continue
				}
				id := strings.ReplaceAll(r.RuleID, oldRoomID, newRoomID)
				if found, _ := rs.Find(kind, id); found != nil {
					continue
				}
				c := *r
				c.RuleID = id
				c.Actions = slices.Clone(r.Actions)
				c.Conditions = nil
				for _, cond := range r.Conditions {
					if cond.Key == "room_id" && cond.Pattern != nil && *cond.Pattern == oldRoomID {
						p := newRoomID
						cond.Pattern = &p
					}
					c.Conditions = append(c.Conditions, cond)
				}
				if r.Conditions != nil && c.Conditions == nil {
					c.Conditions = []Condition{}
				}
				*l = slices.Insert(*l, i, &c)
				changed = true
			}
		}
		if !changed {
			return errUnchanged
		}
		return nil
	})
	if errors.Is(err, errUnchanged) {
		return nil
	}
	return err
}

// matchesRoom reports whether a rule has an event_match condition on the
// event's room_id with exactly roomID.
func matchesRoom(r *Rule, roomID string) bool {
	for _, c := range r.Conditions {
		if c.Kind == "event_match" && c.Key == "room_id" && c.Pattern != nil && *c.Pattern == roomID {
			return true
		}
	}
	return false
}
