package room

import (
	"context"
	"encoding/json"
	"sort"
	"sync"

	"conclave/internal/authrules"
	"conclave/internal/event"
	"conclave/internal/store"
)

// Visibility decides which events of one room one user may see, following
// the Client-Server API's "History visibility" rules. It holds the user's
// membership history and the room's history_visibility history, so deciding
// for many events costs two small queries in all.
type Visibility struct {
	userID  string
	members []posValue // the user's membership after each of their member events
	history []posValue // history_visibility after each change
	// joinedWith is the history_visibility of the state the room's history
	// here starts from, read on first need (see CanSee).
	joinedWith     func() string
	joinedWithOnce sync.Once
	joinedWithVal  string
}

type posValue struct {
	pos   int64
	value string
}

// Visibility loads what is needed to filter events of roomID for userID.
func (s *Service) Visibility(ctx context.Context, roomID, userID string) (*Visibility, error) {
	v := &Visibility{userID: userID}
	v.joinedWith = func() string {
		// The state before the room's first timeline event here: for a room
		// joined through another server, the state the join came with.
		st, err := s.store.StateAt(ctx, roomID, 0)
		if err != nil {
			return ""
		}
		for i := range st {
			if st[i].Type == "m.room.history_visibility" && st[i].StateKey != nil && *st[i].StateKey == "" {
				var c struct {
					HistoryVisibility string `json:"history_visibility"`
				}
				json.Unmarshal(contentOf(st[i].JSON), &c)
				return c.HistoryVisibility
			}
		}
		return ""
	}
	mem, err := s.store.StateEventsOf(ctx, roomID, "m.room.member", userID)
	if err != nil {
		return nil, err
	}
	for _, e := range mem {
		v.members = append(v.members, posValue{e.Pos, e.Membership})
	}
	hv, err := s.store.StateEventsOf(ctx, roomID, "m.room.history_visibility", "")
	if err != nil {
		return nil, err
	}
	for i := range hv {
		var c struct {
			HistoryVisibility string `json:"history_visibility"`
		}
		json.Unmarshal(contentOf(hv[i].JSON), &c)
		v.history = append(v.history, posValue{hv[i].Pos, c.HistoryVisibility})
	}
	return v, nil
}

func contentOf(pduJSON []byte) json.RawMessage {
	var e struct {
		Content json.RawMessage `json:"content"`
	}
	json.Unmarshal(pduJSON, &e)
	return e.Content
}

// before returns the value in effect just before pos.
func before(vals []posValue, pos int64) string {
	i := sort.Search(len(vals), func(i int) bool { return vals[i].pos >= pos })
	if i == 0 {
		return ""
	}
	return vals[i-1].value
}

// Current is the user's membership now ("" if never a member).
func (v *Visibility) Current() string {
	if len(v.members) == 0 {
		return ""
	}
	return v.members[len(v.members)-1].value
}

// LastPos is the position of the user's latest membership event (0 if none).
func (v *Visibility) LastPos() int64 {
	if len(v.members) == 0 {
		return 0
	}
	return v.members[len(v.members)-1].pos
}

// EverJoined reports whether the user was ever joined to the room. A user
// who was only invited (or knocked) and then left was never a member: spec
// GET /rooms/{roomId}/state and /members refuse one who "wasn't previously
// a member of the room".
func (v *Visibility) EverJoined() bool {
	for _, m := range v.members {
		if m.value == "join" {
			return true
		}
	}
	return false
}

// WorldReadable reports whether the room's history is world readable now.
func (v *Visibility) WorldReadable() bool {
	return len(v.history) > 0 && v.history[len(v.history)-1].value == "world_readable"
}

// CanSee reports whether the user may see the event at pos. The user's own
// membership events are always visible to them.
func (v *Visibility) CanSee(pos int64, ev *store.StoredEvent) bool {
	if ev != nil && ev.Type == "m.room.member" && ev.StateKey != nil && *ev.StateKey == v.userID {
		return true
	}
	hv := before(v.history, pos)
	if hv == "" && pos < 0 && (len(v.history) == 0 || v.history[0].pos > 0) {
		// Backfilled history (store.KindBackfilled) before any
		// history_visibility event was backfilled: the one this server joined
		// with stands in for the one in force then, which it has not fetched
		// yet. (Once one is, what is older than the oldest came before any.)
		v.joinedWithOnce.Do(func() { v.joinedWithVal = v.joinedWith() })
		hv = v.joinedWithVal
	}
	if hv == "" {
		hv = "shared" // the spec's default when no history_visibility is set
	}
	if hv == "world_readable" {
		return true
	}
	mem := before(v.members, pos)
	if mem == "join" {
		return true
	}
	switch hv {
	case "shared":
		// Allowed if the user joined at any point after the event.
		for _, m := range v.members {
			if m.pos > pos && m.value == "join" {
				return true
			}
		}
	case "invited":
		if mem == "invite" {
			return true
		}
	}
	return false
}

// Filter keeps the events the user may see, in order.
func (v *Visibility) Filter(evs []store.StoredEvent) []store.StoredEvent {
	out := evs[:0:0]
	for i := range evs {
		if v.CanSee(evs[i].Pos, &evs[i]) {
			out = append(out, evs[i])
		}
	}
	return out
}

// membershipOf reads content.membership of a parsed member event.
func membershipOf(p *event.PDU) string {
	m, _ := authrules.Membership(p)
	return m
}
