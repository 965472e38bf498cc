package room

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"

	"conclave/internal/changes"
	"conclave/internal/event"
	"conclave/internal/matrix"
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
		s.setPush(ctx, rs, pdus[i], &rows[i])
	}
}

// setPush sets e's notifications (e.Push), evaluated on rs, the state
// before the event, and how they are stored (e.PushCommon, e.PushOwn).
func (s *Service) setPush(ctx context.Context, rs *roomState, pdu *event.PDU, e *store.NewEvent) {
	if s.PushActions == nil {
		return
	}
	e.Push = s.PushActions(ctx, PushView{rs}, pdu, e.Membership)
	e.PushCommon, e.PushOwn = commonPush(rs, pdu.Sender, s.serverName, e.Push)
}

// commonPush chooses how an event's notifications are stored: when most of
// the local members joined before it (other than the sender) share one
// outcome, that outcome is stored once for the event (common) and only the
// others get a row (own: a different outcome, a recipient who is not a
// joined member — an invitee —, or a member not notified, with nil
// Actions). Writing a row per recipient was most of a message's cost. nil
// common: every notification is stored on its own (e.Push).
func commonPush(rs *roomState, sender, serverName string, push []store.PushAction) (common *store.PushAction, own []store.PushAction) {
	if len(push) < 2 {
		return nil, nil
	}
	type outcome struct {
		thread  string
		hl      bool
		actions string
	}
	counts := make(map[outcome]int, 2)
	notified := make(map[string]bool, len(push))
	for _, a := range push {
		notified[a.UserID] = true
		if _, joined := rs.joined[a.UserID]; joined {
			counts[outcome{a.ThreadID, a.Highlight, string(a.Actions)}]++
		}
	}
	var best outcome
	n := 0
	for o, c := range counts {
		if c > n || c == n && (o.actions < best.actions || o.actions == best.actions && !o.hl) {
			best, n = o, c
		}
	}
	silent := 0
	for u := range rs.joined {
		if u != sender && matrix.ServerOf(u) == serverName && !notified[u] {
			silent++
		}
	}
	if n < 2 || n <= silent+1 {
		return nil, nil // no fewer rows than one per recipient
	}
	common = &store.PushAction{ThreadID: best.thread, Highlight: best.hl, Actions: json.RawMessage(best.actions)}
	for _, a := range push {
		if _, joined := rs.joined[a.UserID]; !joined || a.ThreadID != best.thread || a.Highlight != best.hl || string(a.Actions) != best.actions {
			own = append(own, a)
		}
	}
	for u := range rs.joined {
		if u != sender && matrix.ServerOf(u) == serverName && !notified[u] {
			own = append(own, store.PushAction{UserID: u, ThreadID: best.thread})
		}
	}
	return common, own
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
