package room

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"

	"conclave/internal/changes"
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

// RecentPush returns userID's notifications among roomID's events in
// (after, upto] from memory, with the same guarantees as RecentEvents: ok
// is false when memory cannot tell, and the caller asks the store.
func (s *Service) RecentPush(roomID, userID string, after, upto int64) (out []store.PushAction, ok bool) {
	t := s.Changes
	if t == nil || !t.Known(after) {
		return nil, false
	}
	key := changes.Key{Kind: changes.RoomEvents, Subject: roomID}
	r, _ := s.recent.rooms.Get(roomID)
	if r == nil {
		return nil, !t.Changed(key, after, upto)
	}
	s.recent.mu.Lock()
	from, last := r.from, r.from
	if n := len(r.evs); n > 0 {
		last = r.evs[n-1].Pos
	}
	if after >= from {
		for i := len(r.evs) - 1; i >= 0; i-- {
			e := &r.evs[i]
			if e.Pos <= after {
				break
			}
			if e.Pos > upto {
				continue
			}
			for _, a := range r.push[e.Pos] {
				if a.UserID == userID {
					out = append(out, a)
					break
				}
			}
		}
	}
	s.recent.mu.Unlock()
	if after < from || t.Changed(key, max(last, after), upto) {
		return nil, false
	}
	return out, true
}

// RecentPushAt returns userID's notifications among roomID's events at the
// given positions, when every one of them is kept in memory (written by this
// process since the room's kept events begin): a /sync whose timeline holds
// every event of a range counts them without the store even while another
// write to the room is in flight. ok is false otherwise.
func (s *Service) RecentPushAt(roomID, userID string, positions []int64) (out []store.PushAction, ok bool) {
	if s.recent.rooms == nil {
		return nil, false
	}
	r, _ := s.recent.rooms.Get(roomID)
	if r == nil {
		return nil, len(positions) == 0
	}
	s.recent.mu.Lock()
	defer s.recent.mu.Unlock()
	for _, p := range positions {
		if _, found := slices.BinarySearchFunc(r.evs, p, func(e store.StoredEvent, p int64) int { return cmp.Compare(e.Pos, p) }); !found {
			return nil, false
		}
		for _, a := range r.push[p] {
			if a.UserID == userID {
				out = append(out, a)
				break
			}
		}
	}
	return out, true
}
