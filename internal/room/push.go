package room

import (
	"context"
	"encoding/json"

	"conclave/internal/event"
	"conclave/internal/store"
)

// PushView is what push rule evaluation reads of a room (push.Room): the
// writer's in-memory state, valid only during the PushActions call, under
// the room's lock.
type PushView struct{ rs *roomState }

// RoomID is the room's ID.
func (v PushView) RoomID() string { return v.rs.roomID }

// JoinedMembers calls fn for each joined member.
func (v PushView) JoinedMembers(fn func(string)) {
	for u := range v.rs.joined {
		fn(u)
	}
}

// MemberCount is the number of joined members.
func (v PushView) MemberCount() int { return len(v.rs.joined) }

// MemberEvent returns the user's member event ID and content.
func (v PushView) MemberEvent(userID string) (string, json.RawMessage) {
	if ev := v.rs.StateEvent("m.room.member", userID); ev != nil {
		return ev.EventID, ev.Content
	}
	return "", nil
}

// UserPower is the user's power level.
func (v PushView) UserPower(userID string) int64 { return v.rs.userPower(userID) }

// NotificationPower is the level the notification key needs (power levels'
// "notifications"; 50 when unset, spec "m.room.power_levels").
func (v PushView) NotificationPower(key string) int64 {
	pl, err := v.rs.powerLevels()
	if err != nil {
		return 50
	}
	if n, ok := pl.Notification(key); ok {
		return n
	}
	return 50
}

// addPushActions sets the notifications of events about to be committed.
// Each is evaluated on the state before the batch: batches of several
// events (room creation) have no other member yet.
func (s *Service) addPushActions(ctx context.Context, rs *roomState, pdus []*event.PDU, rows []store.NewEvent) {
	if s.PushActions == nil {
		return
	}
	for i := range rows {
		rows[i].Push = s.pushActionsFor(ctx, rs, pdus[i], rows[i].Membership)
	}
}

func (s *Service) pushActionsFor(ctx context.Context, rs *roomState, pdu *event.PDU, membership string) []store.PushAction {
	if s.PushActions == nil {
		return nil
	}
	return s.PushActions(ctx, PushView{rs}, pdu, membership)
}
