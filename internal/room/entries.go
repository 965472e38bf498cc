package room

// The room service keeps each room's writer lock and parsed current state in
// a bounded cache: at most maxStates rooms, the least recently used
// forgotten first — but never one whose lock is held or awaited (pinned),
// since its lock is what orders the room's writes. A forgotten room's state
// is loaded from the store again on next use, with the same result. An
// entry for a room that does not exist (its load failed) is forgotten as
// soon as nobody holds it, so requests naming random room IDs leave nothing
// behind.

// DefaultMaxRoomStates bounds the rooms whose state is kept in memory.
const DefaultMaxRoomStates = 20_000

// SetMaxRoomStates changes the bound (tests).
func (s *Service) SetMaxRoomStates(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maxStates = max(n, 1)
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
// the cache shrinks back to its bound.
func (s *Service) release(e *roomEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e.pins--
	// Nobody holds e.mu now, so its state can be read here.
	if e.pins == 0 && e.state == nil {
		s.forgetLocked(e)
	}
	s.evictLocked()
}

func (s *Service) forgetLocked(e *roomEntry) {
	if s.rooms[e.id] != e {
		return
	}
	delete(s.rooms, e.id)
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

// evictLocked forgets the least recently used unpinned entries beyond the
// bound.
func (s *Service) evictLocked() {
	for e := s.recency.prev; len(s.rooms) > s.maxStates && e != &s.recency; {
		prev := e.prev
		if e.pins == 0 {
			s.forgetLocked(e)
		}
		e = prev
	}
}

// cachedRooms is the number of rooms whose entry is kept (tests).
func (s *Service) cachedRooms() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.rooms)
}
