// Package changes owns the one answer to "what may have changed since this
// token": a Tracker records, for each subject (a room, a user), the stream
// position of its latest change of each kind, and the writes of that kind
// still in flight. /sync asks it which queries it can skip, and the caches
// in front of the store (room timelines, memberships, key counts, sessions)
// ask it whether what they hold is still current.
//
// The one rule that makes it exact: a writer marks its change before the
// change becomes visible (Begin, before the commit) and records where it
// landed after (Write.Done). A reader that reads the committed stream
// position after the commit therefore always finds either the change in
// flight or its final position — there is no moment at which the change is
// visible in the store but unknown here. (The counters this replaced were
// bumped after the commit, and a /sync between the commit and the bump lost
// the change for good.)
//
// Marks are kept for a bounded number of subjects. Forgetting marks raises a
// floor, a stream position below which the Tracker no longer answers
// (Known reports false and the caller asks the store), so forgetting never
// turns into a wrong "nothing changed". Caches that hold values not keyed by
// stream position (sessions, key counts, memberships) use ticks, a logical
// clock of this Tracker with the same before/after rule (Tick, Unchanged).
//
// A Tracker is exact only if it sees every write to the database: the
// homeserver uses one only when this process is the database's only writer.
// Every method is safe on a nil *Tracker, which knows nothing: Known and
// Unchanged report false and writes are not recorded.
package changes

import (
	"context"
	"slices"
	"sync"
)

// Kind is a kind of change; each kind has its own kind of subject.
type Kind uint8

// The kinds of change.
const (
	RoomEvents    Kind = iota // room ID: an event was added to the room
	RoomRelations             // room ID: an event relating to another was added
	RoomMembers               // room ID: a membership in the room changed
	Receipts                  // room ID: a receipt in the room changed
	DeviceLists               // room ID: a member's devices or keys changed; "" while any such write is in flight
	UserDevices               // user ID: the user's own devices or keys changed
	Memberships               // user ID: the user's own membership of some room changed
	AccountData               // user ID: the user's account data changed
	ToDevice                  // user ID: a to-device message for one of the user's devices
	KeyCounts                 // user ID: one-time or fallback key counts of the user's devices changed
	Sessions                  // user ID: the user's access tokens or devices changed (ticks only)
	RoomResolved              // room ID: a received event's write changed the current state by state resolution
	RoomGap                   // room ID: a received event was taken with history missing before it (a timeline gap)
	numKinds
)

var kindNames = [numKinds]string{"room-events", "room-relations", "room-members", "receipts", "device-lists",
	"user-devices", "memberships", "account-data", "to-device", "key-counts", "sessions", "room-resolved", "room-gap"}

func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return "unknown"
}

// Key is one subject's changes of one kind.
type Key struct {
	Kind    Kind
	Subject string
}

// Tracker records changes by stream position. The zero value is not usable:
// call New.
type Tracker struct {
	committed func() int64 // the store's highest committed stream position
	max       int

	mu    sync.RWMutex
	floor int64 // marks at or below floor may be forgotten: Known(since) needs since >= floor
	// tick is the logical clock of Tick/Unchanged; tickFloor the highest
	// tick of a forgotten mark.
	tick, tickFloor uint64
	marks           map[Key]*mark

	feed *feed // set when fed by the database's notifications (feed.go)
}

type mark struct {
	pos    int64   // the highest committed position of a change (at or above the real one)
	tick   uint64  // the tick of the latest Begin or Done
	flying []int64 // for each write in flight: the committed position when it began
}

// DefaultMaxSubjects bounds the keys a Tracker keeps marks for.
const DefaultMaxSubjects = 500_000

// New returns a Tracker for a store whose highest committed stream position
// committed returns; it must be called before this process writes anything,
// and committed must be cheap (it is read at every Begin).
func New(committed func() int64) *Tracker {
	return &Tracker{committed: committed, max: DefaultMaxSubjects, floor: committed(), marks: make(map[Key]*mark)}
}

// SetMaxSubjects changes the bound on the keys kept (tests).
func (t *Tracker) SetMaxSubjects(n int) {
	t.mu.Lock()
	t.max = max(n, 2)
	t.mu.Unlock()
}

// Write is one write in flight, from Begin to Done.
type Write struct {
	t     *Tracker
	keys  []Key
	floor int64
	done  bool
}

// Begin marks keys as changing: call it before the write commits (before
// the transaction starts, or inside it before the commit). Every Begin must
// be followed by Done, also when the write fails.
func (t *Tracker) Begin(keys ...Key) *Write {
	if t == nil || len(keys) == 0 {
		return nil
	}
	// The write's positions are all above what is committed now.
	floor := t.committed()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.tick++
	for _, k := range keys {
		m := t.markLocked(k)
		m.flying = append(m.flying, floor)
		m.tick = t.tick
	}
	return &Write{t: t, keys: keys, floor: floor}
}

// markLocked returns k's mark, making it if there is none.
func (t *Tracker) markLocked(k Key) *mark {
	m := t.marks[k]
	if m == nil {
		m = &mark{}
		t.marks[k] = m
	}
	return m
}

// Done records that the write committed with pos as its highest stream
// position, or ended without committing. pos 0 means "not known": the
// store's committed position now is used, which is at or above the real
// one. After a failure call Done(0) too: a write that failed may still have
// committed (an error after the commit), and a false alarm costs only a query.
// Extra keys are recorded at pos as well, without having been in flight: use
// them for subjects only known after the commit, while Begin's keys keep
// readers on the slow path until then.
func (w *Write) Done(pos int64, extra ...Key) {
	if w == nil || w.done {
		return
	}
	w.done = true
	t := w.t
	if pos <= 0 {
		pos = t.committed()
		if f := t.feed; f != nil {
			// Heard lags the database: the write's real position is at or
			// below the database's, and its own notification records it.
			if p, err := f.dbMax(context.Background()); err == nil {
				pos = p
			}
		}
	}
	t.done(w, pos, extra)
	if f := t.feed; f != nil {
		f.waitHeard(pos)
	}
}

func (t *Tracker) done(w *Write, pos int64, extra []Key) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range w.keys {
		m := t.marks[k]
		if i := slices.Index(m.flying, w.floor); i >= 0 {
			m.flying = slices.Delete(m.flying, i, i+1)
		}
	}
	t.tick++
	t.recordLocked(pos, w.keys)
	t.recordLocked(pos, extra)
	t.boundLocked()
}

// recordLocked records keys as changed at pos, at the current tick.
func (t *Tracker) recordLocked(pos int64, keys []Key) {
	for _, k := range keys {
		m := t.markLocked(k)
		m.pos = max(m.pos, pos)
		m.tick = t.tick
	}
}

// boundLocked keeps the marks within bounds.
func (t *Tracker) boundLocked() {
	if len(t.marks) > t.max {
		t.forget()
	}
}

// Known reports whether the Tracker can answer Changed for ranges starting
// at since: it has every mark above since.
func (t *Tracker) Known(since int64) bool {
	if t == nil {
		return false
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	return since >= t.floor
}

// Changed reports whether k may have changed in (since, upto]: a change of
// k committed above since, or a write of k in flight that may land at or
// below upto. false is certain when Known(since); true may be a false alarm.
// It reports true when the Tracker cannot tell.
func (t *Tracker) Changed(k Key, since, upto int64) bool {
	return t.ChangedAny([]Key{k}, since, upto)
}

func (t *Tracker) changedLocked(k Key, since, upto int64) bool {
	m := t.marks[k]
	if m == nil {
		return false
	}
	if m.pos > since {
		return true
	}
	return m.flyingBelow(upto)
}

// flyingBelow reports whether a write in flight may land at or below upto
// (its positions are above the floor it began at).
func (m *mark) flyingBelow(upto int64) bool {
	for _, f := range m.flying {
		if f < upto {
			return true
		}
	}
	return false
}

// ChangedAny is Changed for several keys at once (one lock).
func (t *Tracker) ChangedAny(keys []Key, since, upto int64) bool {
	if t == nil {
		return true
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if since < t.floor {
		return true
	}
	for _, k := range keys {
		if t.changedLocked(k, since, upto) {
			return true
		}
	}
	return false
}

// Flying reports whether a write of k is in flight that may land at or below
// upto.
func (t *Tracker) Flying(k Key, upto int64) bool {
	if t == nil {
		return true
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	m := t.marks[k]
	return m != nil && m.flyingBelow(upto)
}

// Tick returns the current tick. A cache reads it before it loads a value
// from the store, and keeps the value only while Unchanged(k, tick).
func (t *Tracker) Tick() uint64 {
	if t == nil {
		return 0
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.tick
}

// Unchanged reports whether no write of k began or ended after tick and none
// is in flight: a value of k loaded from the store after Tick returned tick
// is still current. false when the Tracker cannot tell.
func (t *Tracker) Unchanged(k Key, tick uint64) bool {
	if t == nil {
		return false
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	m := t.marks[k]
	if m == nil {
		return tick >= t.tickFloor
	}
	return len(m.flying) == 0 && m.tick <= tick
}

// forget drops about half of the marks — those with the lowest positions
// and no write in flight — and raises the floor to the highest position
// dropped, so that no answer depends on what was forgotten.
func (t *Tracker) forget() {
	ps := make([]int64, 0, len(t.marks))
	for _, m := range t.marks {
		if len(m.flying) == 0 {
			ps = append(ps, m.pos)
		}
	}
	if len(ps) == 0 {
		return
	}
	slices.Sort(ps)
	cut := ps[len(ps)/2]
	for k, m := range t.marks {
		if len(m.flying) == 0 && m.pos <= cut {
			t.tickFloor = max(t.tickFloor, m.tick)
			delete(t.marks, k)
		}
	}
	t.floor = max(t.floor, cut)
}

// ForgetAll forgets every mark of a finished write and raises the floor to
// the committed position: for a writer that cannot name what it changed.
// Readers whose range starts below the new floor ask the store.
func (t *Tracker) ForgetAll() {
	if t == nil {
		return
	}
	pos := t.committed()
	if f := t.feed; f != nil {
		if p, err := f.dbMax(context.Background()); err == nil {
			pos = max(pos, p)
		}
	}
	t.forgetThrough(pos)
}
