package room

import (
	"context"
	"math"
	"sync"

	"conclave/internal/changes"
	"conclave/internal/lru"
	"conclave/internal/store"
)

// Every write of the room service is marked in the change tracker
// (changes.Tracker) before it commits and recorded after: /sync learns from
// it which rooms changed since a token without asking the store, and
// formatting skips looking for relations nobody sent. The service also keeps
// each room's latest events as the store holds them (redactions applied), so
// that the /sync of each member after a message reads it from memory.
//
// Both only work when this process is the database's only writer; the
// homeserver sets Changes then (TrackChanges), and leaves it nil otherwise.

// recentEvents are a room's latest events as the store holds them.
type recentEvents struct {
	evs  []store.StoredEvent // ascending positions
	from int64               // every event of the room after from is in evs
	// push: the notifications of kept events, by position (events without
	// any have no entry), so /sync counts new ones from memory (push.go).
	push map[int64][]store.PushAction
}

// recentPerRoom bounds recentEvents.evs; maxRecentRooms bounds the rooms
// whose events are kept (the least recently written are forgotten).
const (
	recentPerRoom  = 64
	maxRecentRooms = 20_000
)

type recentCache struct {
	mu    sync.Mutex // guards the contents of the entries
	rooms *lru.Cache[string, *recentEvents]
}

// TrackChanges turns on the fast paths above with t, the tracker of every
// write to the database. Call it before the first write.
func (s *Service) TrackChanges(t *changes.Tracker) {
	s.Changes = t
	s.recent.rooms = lru.New[string, *recentEvents](maxRecentRooms)
}

// RecentEvents answers what store.RoomEvents would for a timeline query
// without filters — the newest events of roomID in (after, upto], newest
// first, at most limit — from memory. ok is false when memory cannot tell
// (tracking off, a write in flight, or the range starts before what is
// kept): the caller asks the store. The events are copies.
func (s *Service) RecentEvents(roomID string, after, upto int64, limit int) (evs []store.StoredEvent, ok bool) {
	t := s.Changes
	if t == nil || limit <= 0 || !t.Known(after) {
		return nil, false
	}
	key := changes.Key{Kind: changes.RoomEvents, Subject: roomID}
	r, _ := s.recent.rooms.Get(roomID)
	if r == nil {
		// Nothing kept: memory knows only that there is nothing.
		return nil, !t.Changed(key, after, upto)
	}
	s.recent.mu.Lock()
	from, last := r.from, r.from
	if n := len(r.evs); n > 0 {
		last = r.evs[n-1].Pos
	}
	if after >= from {
		for i := len(r.evs) - 1; i >= 0 && len(evs) < limit; i-- {
			e := r.evs[i]
			if e.Pos <= after {
				break
			}
			if e.Pos <= upto {
				evs = append(evs, e)
			}
		}
	}
	s.recent.mu.Unlock()
	// Read after the events: a write that appended more since is either
	// recorded above last or still in flight.
	if after < from || t.Changed(key, max(last, after), upto) {
		return nil, false
	}
	return evs, true
}

// ChangedBetween reports whether roomID may have an event in (since, upto].
// false is certain; true may be a false alarm. known is false when the
// tracker cannot tell (off, or since older than what it remembers): the
// caller must ask the store.
func (s *Service) ChangedBetween(roomID string, since, upto int64) (changed, known bool) {
	t := s.Changes
	if !t.Known(since) {
		return false, false
	}
	return t.Changed(changes.Key{Kind: changes.RoomEvents, Subject: roomID}, since, upto), true
}

// relationsAfter reports whether roomID may hold an event with a relation
// after position pos (true when the tracker cannot tell).
func (s *Service) relationsAfter(roomID string, pos int64) bool {
	return s.Changes.Changed(changes.Key{Kind: changes.RoomRelations, Subject: roomID}, pos-1, math.MaxInt64)
}

// ForgetRecent drops what is kept of roomID's recent events ("": of every
// room): another process wrote to it.
func (s *Service) ForgetRecent(roomID string) {
	if s.recent.rooms == nil {
		return
	}
	if roomID == "" {
		s.recent.rooms.Clear()
		return
	}
	s.recent.rooms.Delete(roomID)
}

// begin marks a write of rows to roomID in the tracker before it commits,
// and returns the context to write with (it carries the marks to other
// processes) and what records the outcome: done(positions) after a commit,
// done(nil) after a failure.
func (s *Service) begin(ctx context.Context, roomID string, rows []store.NewEvent) (context.Context, func(positions []int64)) {
	return s.beginWith(ctx, roomID, rows, nil)
}

// beginWith is begin for a write that also changes the memberships of
// otherMembers (state resolution can change any part of the state).
func (s *Service) beginWith(ctx context.Context, roomID string, rows []store.NewEvent, otherMembers []string) (context.Context, func(positions []int64)) {
	return s.beginResolved(ctx, roomID, rows, otherMembers, false, false)
}

// resolvedOthers reports whether a received event's write changes the
// current state by state resolution in more than the event itself (which
// the timeline carries).
func resolvedOthers(w *store.GraphWrite) bool {
	if !w.CurrentResolved {
		return false
	}
	for _, c := range w.CurrentChanges {
		if c.EventID != w.Event.EventID {
			return true
		}
	}
	return false
}

// beginResolved is beginWith for a received event's write; resolved: it
// changes the current state by state resolution (not only by the event
// itself), which /sync reports in the room's state section; gap: history
// before the event is missing here (a timeline gap /sync ends timelines at).
func (s *Service) beginResolved(ctx context.Context, roomID string, rows []store.NewEvent, otherMembers []string, resolved, gap bool) (context.Context, func(positions []int64)) {
	t := s.Changes
	if t == nil {
		return ctx, func([]int64) {}
	}
	keys := []changes.Key{{Kind: changes.RoomEvents, Subject: roomID}}
	if resolved {
		keys = append(keys, changes.Key{Kind: changes.RoomResolved, Subject: roomID})
	}
	if gap {
		keys = append(keys, changes.Key{Kind: changes.RoomGap, Subject: roomID})
	}
	members, relations := false, false
	if len(otherMembers) > 0 {
		members = true
		keys = append(keys, changes.Key{Kind: changes.RoomMembers, Subject: roomID})
		for _, u := range otherMembers {
			keys = append(keys, changes.Key{Kind: changes.Memberships, Subject: u})
		}
	}
	for i := range rows {
		e := &rows[i]
		if e.RelatesTo != "" && !relations {
			relations = true
			keys = append(keys, changes.Key{Kind: changes.RoomRelations, Subject: roomID})
		}
		if e.Type == "m.room.member" && e.StateKey != nil {
			if !members {
				members = true
				keys = append(keys, changes.Key{Kind: changes.RoomMembers, Subject: roomID})
			}
			keys = append(keys, changes.Key{Kind: changes.Memberships, Subject: *e.StateKey})
		}
	}
	w := t.Begin(keys...)
	return w.Context(ctx), func(positions []int64) {
		if len(positions) == len(rows) && len(rows) > 0 {
			// Recorded first (with several processes, Done also waits until
			// every earlier write is heard, and another process's write to
			// the room has dropped what was kept); until the events are
			// kept, readers see the room changed after what is kept and ask
			// the store.
			w.Done(positions[len(positions)-1])
			s.remember(roomID, rows, positions)
			return
		}
		s.recent.rooms.Delete(roomID)
		w.Done(0)
	}
}

// remember appends committed rows to the room's recent events, applying
// their redactions to kept events as the store does (first one wins). The
// room's writes are serialised (the room lock, across processes too), and
// another process's write drops the room's entry before it is heard, so an
// entry holds every event of the room after its from; a new entry starts
// just before the rows, whose positions are consecutive.
func (s *Service) remember(roomID string, rows []store.NewEvent, positions []int64) {
	r, _ := s.recent.rooms.Get(roomID)
	if r == nil {
		r = &recentEvents{from: positions[0] - 1}
		s.recent.rooms.Put(roomID, r)
	}
	s.recent.mu.Lock()
	defer s.recent.mu.Unlock()
	for i := range rows {
		e := &rows[i]
		if len(e.Push) > 0 {
			if r.push == nil {
				r.push = map[int64][]store.PushAction{}
			}
			r.push[positions[i]] = e.Push
		}
		r.evs = append(r.evs, store.StoredEvent{
			Pos: positions[i], EventID: e.EventID, RoomID: roomID, JSON: e.JSON,
			ReplacesState: e.ReplacesState, SenderDevice: e.SenderDevice, TxnID: e.TxnID,
			Membership: e.Membership, Type: e.Type, StateKey: e.StateKey, Sender: e.Sender,
		})
		if e.Redacts != "" {
			for j := range r.evs {
				if r.evs[j].EventID == e.Redacts && r.evs[j].RedactedBy == "" {
					r.evs[j].RedactedBy = e.EventID
				}
			}
		}
	}
	if n := len(r.evs) - recentPerRoom; n > 0 {
		r.from = r.evs[n-1].Pos
		for _, e := range r.evs[:n] {
			delete(r.push, e.Pos)
		}
		r.evs = append(r.evs[:0:0], r.evs[n:]...)
	}
}

// Forget marks roomID forgotten by userID (POST /forget; the caller checked
// that the user left). It changes the user's memberships as /sync sees them.
func (s *Service) Forget(ctx context.Context, userID, roomID string) error {
	w := s.Changes.Begin(changes.Key{Kind: changes.Memberships, Subject: userID})
	err := s.store.ForgetRoom(w.Context(ctx), userID, roomID)
	w.Done(0)
	return err
}
