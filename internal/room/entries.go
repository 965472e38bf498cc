package room

// The room service keeps each room's writer lock and parsed current state in
// a bounded cache: at most maxStates rooms and maxStateEvents state events
// in all (a few large rooms weigh as much as many small ones), the least
// recently used forgotten first — but never the most recent one (a room
// larger than the bound is not reloaded on every use), and never one whose
// lock is held or awaited (pinned),
// since its lock is what orders the room's writes. A forgotten room's state
// is loaded from the store again on next use, with the same result. An
// entry for a room that does not exist (its load failed) is forgotten as
// soon as nobody holds it, so requests naming random room IDs leave nothing
// behind.

// Bounds on the rooms whose state is kept in memory, and on their state
// events in all.
const (
	DefaultMaxRoomStates  = 20_000
	DefaultMaxStateEvents = 500_000
)

// SetMaxRoomStates changes the bounds (tests).
func (s *Service) SetMaxRoomStates(rooms, stateEvents int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maxStates, s.maxStateEvents = max(rooms, 1), max(stateEvents, 1)
	s.evictLocked()
}

// entry returns roomID's entry, pinned: the caller locks e.mu and ends with
// unlock (or release, if it never locked).
func (s *Service) entry(roomID string) *roomEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.rooms[roomID]
	if e == nil {
		e = &roomEntry{id: roomID}
		s.rooms[roomID] = e
	} else {
		e.prev.next, e.next.prev = e.next, e.prev
	}
	e.prev, e.next = &s.recency, s.recency.next
	s.recency.next.prev = e
	s.recency.next = e
	e.pins++
	return e
}

// unlock releases e's lock and its pin.
func (s *Service) unlock(e *roomEntry) {
	e.mu.Unlock()
	s.release(e)
}

// release drops a pin; an unpinned entry without state is forgotten, and
// the cache shrinks back to its bounds.
func (s *Service) release(e *roomEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e.pins--
	if e.pins == 0 {
		// Nobody holds e.mu now, so its state can be read here.
		if e.state == nil {
			s.forgetLocked(e)
		} else if n := len(e.state.state); n != e.size && s.rooms[e.id] == e {
			s.stateEvents += n - e.size
			e.size = n
		}
	}
	s.evictLocked()
}

func (s *Service) forgetLocked(e *roomEntry) {
	if s.rooms[e.id] != e {
		return
	}
	s.stateEvents -= e.size
	e.size = 0
	delete(s.rooms, e.id)
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

// evictLocked forgets the least recently used unpinned entries beyond the
// bounds (never the most recently used).
func (s *Service) evictLocked() {
	for e := s.recency.prev; (len(s.rooms) > s.maxStates || s.stateEvents > s.maxStateEvents) && e != &s.recency && e != s.recency.next; {
		prev := e.prev
		if e.pins == 0 {
			s.forgetLocked(e)
		}
		e = prev
	}
}

// cachedRooms is the number of rooms whose entry is kept, and their state
// events as last counted (tests).
func (s *Service) cachedRooms() (rooms, stateEvents int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.rooms), s.stateEvents
}
