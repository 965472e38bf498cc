package room

import (
	"math"
	"sync"

	"conclave/internal/store"
)

// positions remembers, per room, the stream position of the room's last
// event and of its last event with a relation, for the writes this process
// made since tracking began. /sync uses it to find the user's rooms that
// changed since a token without asking the store, and formatting uses it
// to skip looking for relations nobody sent.
//
// It is only exact when this process is the database's only writer, so it
// is off unless TrackPositions is called (the homeserver does so when no
// other process shares the database). While a room write is in flight its
// entries read as "changed at +infinity": a reader racing the commit takes
// the slow path instead of missing the event.
type positions struct {
	mu  sync.RWMutex
	on  bool
	now func() int64 // the store's committed stream position
	// flightFloor[room]: the committed position when the room's in-flight
	// write began; that write's events all land after it.
	flightFloor map[string]int64
	floor       int64 // positions at or below floor were written before tracking
	last        map[string]int64
	rel         map[string]int64
	recent      map[string]*recentEvents
}

// recentEvents are a room's latest events as the store holds them, so that
// the /sync of each member after a message reads it from memory instead of
// the store (RecentEvents).
type recentEvents struct {
	evs  []store.StoredEvent // ascending positions
	from int64               // every event of the room after from is in evs
}

// recentPerRoom bounds recentEvents.evs; maxRecentRooms bounds the rooms
// kept (past it, the map starts over).
const (
	recentPerRoom  = 64
	maxRecentRooms = 20_000
)

const inFlight = math.MaxInt64

// TrackPositions turns position tracking on; floor is the store's highest
// stream position now, before any write of this process, and now reads the
// store's committed position (cheaply: it is asked before every write).
func (s *Service) TrackPositions(floor int64, now func() int64) {
	p := &s.pos
	p.mu.Lock()
	defer p.mu.Unlock()
	p.on, p.floor, p.now = true, floor, now
	p.flightFloor = make(map[string]int64)
	p.last, p.rel = make(map[string]int64), make(map[string]int64)
	p.recent = make(map[string]*recentEvents)
}

// RecentEvents answers what store.RoomEvents would for a timeline query
// without filters — the newest events of roomID in (after, upto], newest
// first, at most limit — from memory. ok is false when memory cannot tell
// (tracking off, a write in flight, or the range starts before what is
// kept): the caller asks the store. The events are copies.
func (s *Service) RecentEvents(roomID string, after, upto int64, limit int) (evs []store.StoredEvent, ok bool) {
	p := &s.pos
	p.mu.RLock()
	defer p.mu.RUnlock()
	if !p.on || after < p.floor || limit <= 0 {
		return nil, false
	}
	last := p.last[roomID]
	if last == inFlight {
		// A write is in flight; its events land after flightFloor, so a
		// range ending there cannot hold them, and what the room had
		// before the write is all kept.
		if upto > p.flightFloor[roomID] {
			return nil, false
		}
		last = p.flightFloor[roomID]
	}
	r := p.recent[roomID]
	if r == nil {
		// Nothing written since tracking began: no event after the floor.
		return nil, last <= after
	}
	if after < r.from {
		return nil, false
	}
	for i := len(r.evs) - 1; i >= 0 && len(evs) < limit; i-- {
		e := r.evs[i]
		if e.Pos <= after {
			break
		}
		if e.Pos <= upto {
			evs = append(evs, e)
		}
	}
	return evs, true
}

// ChangedBetween reports whether roomID may have an event in (since, upto].
// false is certain; true may be a false alarm when a write is in flight or
// landed after upto (the caller's query then finds nothing). known is false
// when tracking cannot tell (off, or since older than tracking): the caller
// must ask the store.
func (s *Service) ChangedBetween(roomID string, since, upto int64) (changed, known bool) {
	p := &s.pos
	p.mu.RLock()
	defer p.mu.RUnlock()
	if !p.on || since < p.floor {
		return false, false
	}
	return p.last[roomID] > since, true
}

// relationsAfter reports whether roomID may hold an event with a relation
// after position pos (true when tracking cannot tell).
func (s *Service) relationsAfter(roomID string, pos int64) bool {
	p := &s.pos
	p.mu.RLock()
	defer p.mu.RUnlock()
	if !p.on || pos <= p.floor {
		return true
	}
	return p.rel[roomID] >= pos
}

// begin marks a write to roomID in flight (hasRelation: one of its events
// relates to another) and returns the function that records its outcome:
// done(positions) after a commit, done(nil) after a failure.
func (p *positions) begin(roomID string, rows []store.NewEvent) func(positions []int64) {
	hasRelation := hasRelation(rows)
	p.mu.RLock()
	on, now := p.on, p.now
	p.mu.RUnlock()
	if !on {
		return func([]int64) {}
	}
	// Read before the write starts: every position it gets is later.
	floor := now()
	p.mu.Lock()
	prevLast, prevRel := p.last[roomID], p.rel[roomID]
	p.last[roomID] = inFlight
	p.flightFloor[roomID] = floor
	if hasRelation {
		p.rel[roomID] = inFlight
	}
	p.mu.Unlock()
	return func(positions []int64) {
		p.mu.Lock()
		defer p.mu.Unlock()
		if len(positions) == 0 {
			p.last[roomID], p.rel[roomID] = prevLast, prevRel
			return
		}
		top := positions[len(positions)-1]
		p.last[roomID] = top
		if hasRelation {
			p.rel[roomID] = top
		}
		p.remember(roomID, max(prevLast, p.floor), rows, positions)
	}
}

// remember appends committed rows to the room's recent events, applying
// their redactions to kept events as the store does (first one wins).
func (p *positions) remember(roomID string, coveredFrom int64, rows []store.NewEvent, positions []int64) {
	if len(rows) != len(positions) {
		delete(p.recent, roomID)
		return
	}
	r := p.recent[roomID]
	if r == nil {
		if len(p.recent) >= maxRecentRooms {
			p.recent = make(map[string]*recentEvents)
		}
		r = &recentEvents{from: coveredFrom}
		p.recent[roomID] = r
	}
	for i := range rows {
		e := &rows[i]
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
		r.evs = append(r.evs[:0:0], r.evs[n:]...)
	}
}
