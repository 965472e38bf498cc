// Package typing keeps typing notifications in memory (spec: Client-Server
// API, "Typing Notifications"): who is typing in which room, until when, and
// a serial that increases with every change so /sync can ask what changed.
package typing

import (
	"context"
	"sort"
	"sync"
	"time"

	"conclave/internal/matrix"
)

// Timeout limits, in the spirit of Synapse: a missing timeout means 30 s and
// no notification lasts more than 120 s without being renewed.
const (
	DefaultTimeout = 30 * time.Second
	MaxTimeout     = 120 * time.Second
)

// Clock is the time source; tests substitute a manual one.
type Clock interface {
	Now() time.Time
	// AfterFunc runs f after d and returns a function that cancels it.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

type room struct {
	users   map[string]time.Time // user -> expiry
	changed int64                // serial of the last change
	emptied time.Time            // when the last user stopped typing
}

// A room nobody has typed in for pruneAfter is forgotten (checked at most
// every pruneEvery, when something happens). Its last change, "stopped
// typing", is then only known to be older than pruneFloor: a token below
// that gets an empty typing set for every room it asks about that has no
// entry, so no client keeps showing someone typing.
const (
	pruneAfter = 5 * time.Minute
	pruneEvery = time.Minute
)

// Service is the typing service. Its zero value is not usable; call New.
type Service struct {
	// IsJoined reports whether userID is joined to roomID; only joined users
	// may send typing notifications. Required.
	IsJoined func(ctx context.Context, roomID, userID string) (bool, error)
	// Notify, if set, is called (without locks held) when a room's set of
	// typing users changes, including on expiry.
	Notify func(roomID string)
	// Sent, if set, is told of every accepted change (federation sends
	// those of this server's users to the other servers in the room).
	Sent func(ctx context.Context, roomID, userID string, typing bool)
	// Publish, if set, replicates changes between processes sharing one
	// database: Set and the expiry timer hand their changes to Publish
	// instead of applying them, and the replication layer delivers every
	// process's changes to Apply, in one cluster-wide order with serials
	// from one cluster-wide sequence. Serials, and so sync tokens, then mean
	// the same on every process. nil: changes apply at once, local serial.
	Publish func(ctx context.Context, u Update) error

	clock Clock

	mu     sync.Mutex
	serial int64
	// floor: with Publish, the serial this process started (or last
	// resumed) listening at; a token below it may predate changes this
	// process missed, so it gets the full current state.
	floor int64
	rooms map[string]*room
	timer func() bool // cancels the pending expiry timer
	next  time.Time   // when the pending timer fires
	// pruneFloor: the highest serial of a forgotten room's last change;
	// pruned: when rooms were last looked at for pruning.
	pruneFloor int64
	pruned     time.Time
}

// New returns a service using the real clock.
func New() *Service { return NewWithClock(realClock{}) }

// NewWithClock returns a service using clock. The serial starts at the
// clock's Unix milliseconds, so serials keep increasing across restarts and
// a token from before a restart never hides a later change.
func NewWithClock(c Clock) *Service {
	return &Service{clock: c, rooms: map[string]*room{}, serial: c.Now().UnixMilli()}
}

// MaxLag is how far, with replication, a token's serial may be ahead of
// this process's and still be taken for changes it has not received yet; a
// token further ahead (from another deployment, or forged) gets the full
// current state instead of waiting for serials that may never come.
const MaxLag = 100000

// Update is one typing change as replicated between processes.
type Update struct {
	Room   string `json:"r"`
	User   string `json:"u"`
	Typing bool   `json:"t,omitempty"`
	// Expiry is Unix milliseconds. Typing: when the notification expires.
	// Not typing: zero for an explicit stop; otherwise the update is an
	// expiry, applied only if the notification still expires then (it was
	// not renewed meanwhile).
	Expiry int64 `json:"e,omitempty"`
}

// Set records that userID started (typing true, for timeout; 0 means the
// default, longer is capped) or stopped typing in roomID. The caller has
// checked that userID is the requester.
func (s *Service) Set(ctx context.Context, roomID, userID string, typing bool, timeout time.Duration) error {
	if !matrix.ValidRoomID(roomID) {
		return matrix.InvalidParam("Invalid room ID")
	}
	if s.IsJoined == nil {
		return matrix.Forbidden("Typing notifications are not available")
	}
	joined, err := s.IsJoined(ctx, roomID, userID)
	if err != nil {
		return err
	}
	if !joined {
		return matrix.Forbidden("You are not joined to this room")
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	timeout = min(timeout, MaxTimeout)
	if s.Sent != nil {
		s.Sent(ctx, roomID, userID, typing)
	}
	if s.Publish != nil {
		u := Update{Room: roomID, User: userID, Typing: typing}
		if typing {
			u.Expiry = s.clock.Now().Add(timeout).UnixMilli()
		}
		return s.Publish(ctx, u)
	}

	s.mu.Lock()
	r := s.rooms[roomID]
	changed := false
	if typing {
		if r == nil {
			r = &room{users: map[string]time.Time{}}
			s.rooms[roomID] = r
		}
		_, was := r.users[userID]
		r.users[userID] = s.clock.Now().Add(timeout)
		// Renewing only moves the expiry: the set is unchanged, nobody is woken.
		changed = !was
		s.scheduleLocked()
	} else if r != nil {
		if _, was := r.users[userID]; was {
			delete(r.users, userID)
			changed = true
		}
	}
	if changed {
		s.serial++
		r.changed = s.serial
		s.noteEmptiedLocked(r)
	}
	s.pruneLocked()
	s.mu.Unlock()
	if changed && s.Notify != nil {
		s.Notify(roomID)
	}
	return nil
}

// Apply applies a change delivered by the replication layer (see Publish)
// with its cluster-wide serial. Serials at or below the current one were
// already applied (or predate this process) and are ignored.
func (s *Service) Apply(u Update, serial int64) {
	s.mu.Lock()
	if serial <= s.serial {
		s.mu.Unlock()
		return
	}
	s.serial = serial
	r := s.rooms[u.Room]
	changed := false
	if u.Typing {
		if r == nil {
			r = &room{users: map[string]time.Time{}}
			s.rooms[u.Room] = r
		}
		_, was := r.users[u.User]
		r.users[u.User] = time.UnixMilli(u.Expiry)
		changed = !was
		s.scheduleLocked()
	} else if r != nil {
		if exp, was := r.users[u.User]; was && (u.Expiry == 0 || exp.UnixMilli() == u.Expiry) {
			delete(r.users, u.User)
			changed = true
		}
	}
	if changed {
		r.changed = serial
		s.noteEmptiedLocked(r)
	}
	s.pruneLocked()
	s.mu.Unlock()
	if changed && s.Notify != nil {
		s.Notify(u.Room)
	}
}

// Resume is called by the replication layer when it (re)starts listening,
// with the cluster's serial then: changes before it may have been missed, so
// tokens below it get the full current state.
func (s *Service) Resume(serial int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// The cluster's serial is the authority (the one this process started
	// with counts changes it no longer has to compare with).
	s.serial = serial
	s.floor = serial
}

func (s *Service) noteEmptiedLocked(r *room) {
	if len(r.users) == 0 {
		r.emptied = s.clock.Now()
	}
}

// pruneLocked forgets the rooms nobody has typed in for pruneAfter.
func (s *Service) pruneLocked() {
	now := s.clock.Now()
	if now.Sub(s.pruned) < pruneEvery {
		return
	}
	s.pruned = now
	for id, r := range s.rooms {
		if len(r.users) == 0 && now.Sub(r.emptied) >= pruneAfter {
			s.pruneFloor = max(s.pruneFloor, r.changed)
			delete(s.rooms, id)
		}
	}
}

// scheduleLocked makes sure the expiry timer fires at the earliest expiry
// still to come (an expiry being replicated is past already).
func (s *Service) scheduleLocked() {
	var earliest time.Time
	now := s.clock.Now()
	for _, r := range s.rooms {
		for _, exp := range r.users {
			if !exp.After(now) {
				continue
			}
			if earliest.IsZero() || exp.Before(earliest) {
				earliest = exp
			}
		}
	}
	if earliest.IsZero() {
		return
	}
	if s.timer != nil && !s.next.After(earliest) {
		return // the pending timer fires early enough
	}
	if s.timer != nil {
		s.timer()
	}
	s.next = earliest
	s.timer = s.clock.AfterFunc(earliest.Sub(s.clock.Now()), s.expire)
}

// expire drops expired notifications, bumps the serial for the rooms that
// changed, notifies them and schedules the next expiry.
func (s *Service) expire() {
	if s.Publish != nil {
		s.publishExpiries()
		return
	}
	s.mu.Lock()
	now := s.clock.Now()
	var changed []string
	for id, r := range s.rooms {
		n := len(r.users)
		for u, exp := range r.users {
			if !exp.After(now) {
				delete(r.users, u)
			}
		}
		if len(r.users) != n {
			s.serial++
			r.changed = s.serial
			s.noteEmptiedLocked(r)
			changed = append(changed, id)
		}
	}
	s.pruneLocked()
	s.timer = nil
	s.scheduleLocked()
	s.mu.Unlock()
	if s.Notify != nil {
		for _, id := range changed {
			s.Notify(id)
		}
	}
}

// publishExpiries replicates the expiry of every notification now past.
// Every process does it; the first to arrive applies, the others find the
// user gone (or renewed) and change nothing.
func (s *Service) publishExpiries() {
	s.mu.Lock()
	now := s.clock.Now()
	var due []Update
	for id, r := range s.rooms {
		for u, exp := range r.users {
			if !exp.After(now) {
				due = append(due, Update{Room: id, User: u, Expiry: exp.UnixMilli()})
			}
		}
	}
	s.timer = nil
	s.scheduleLocked()
	s.mu.Unlock()
	for _, u := range due {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s.Publish(ctx, u) // on failure the entry is still hidden once expired (Since)
		cancel()
	}
}

// Serial is the current serial.
func (s *Service) Serial() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.serial
}

// Since returns, for those of roomIDs whose typing set changed after serial,
// the users now typing there (sorted; possibly empty: "stopped typing" must
// reach clients too), and the current serial to pass next time. serial 0 (an
// initial sync), or a serial from the future (another process), returns
// every room with someone typing.
//
// With replication (Publish set) serials are cluster-wide, so a token from
// another process means the same here. One ahead of this process (which has
// not yet received everything the other had) reports nothing newer and is
// handed back unchanged: the changes up to it, once they arrive here, are
// ones the client has seen. A token below the floor (this process may have
// missed changes after it) gets every room with someone typing; a client
// may see a typing set again, which is harmless.
func (s *Service) Since(roomIDs []string, serial int64) (map[string][]string, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]string{}
	if s.Publish != nil && serial > s.serial && serial-s.serial <= MaxLag {
		return out, serial
	}
	initial := serial <= 0 || serial > s.serial || serial < s.floor
	// A room forgotten since this token may owe it "stopped typing".
	stale := !initial && serial < s.pruneFloor
	now := s.clock.Now()
	for _, id := range roomIDs {
		r := s.rooms[id]
		if r == nil {
			if stale {
				out[id] = []string{}
			}
			continue
		}
		if initial && len(r.users) == 0 || !initial && r.changed <= serial {
			continue
		}
		users := make([]string, 0, len(r.users))
		for u, exp := range r.users {
			if exp.After(now) { // an expiry not yet applied is already hidden
				users = append(users, u)
			}
		}
		if initial && len(users) == 0 {
			continue
		}
		sort.Strings(users)
		out[id] = users
	}
	return out, s.serial
}

// Typing returns the users now typing in roomID, sorted.
func (s *Service) Typing(roomID string) []string {
	m, _ := s.Since([]string{roomID}, 0)
	return m[roomID]
}

// EventContent builds the content of the m.typing ephemeral event.
func EventContent(users []string) map[string]any {
	if users == nil {
		users = []string{}
	}
	return map[string]any{"user_ids": users}
}
