package room

import (
	"math"
	"sync"
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
	mu    sync.RWMutex
	on    bool
	floor int64 // positions at or below floor were written before tracking
	last  map[string]int64
	rel   map[string]int64
}

const inFlight = math.MaxInt64

// TrackPositions turns position tracking on; floor is the store's highest
// stream position now, before any write of this process.
func (s *Service) TrackPositions(floor int64) {
	p := &s.pos
	p.mu.Lock()
	defer p.mu.Unlock()
	p.on, p.floor = true, floor
	p.last, p.rel = make(map[string]int64), make(map[string]int64)
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
func (p *positions) begin(roomID string, hasRelation bool) func(positions []int64) {
	p.mu.Lock()
	if !p.on {
		p.mu.Unlock()
		return func([]int64) {}
	}
	prevLast, prevRel := p.last[roomID], p.rel[roomID]
	p.last[roomID] = inFlight
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
	}
}
