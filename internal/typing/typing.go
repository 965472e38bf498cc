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
}

// Service is the typing service. Its zero value is not usable; call New.
type Service struct {
	// IsJoined reports whether userID is joined to roomID; only joined users
	// may send typing notifications. Required.
	IsJoined func(ctx context.Context, roomID, userID string) (bool, error)
	// Notify, if set, is called (without locks held) when a room's set of
	// typing users changes, including on expiry.
	Notify func(roomID string)

	clock Clock

	mu     sync.Mutex
	serial int64
	rooms  map[string]*room
	timer  func() bool // cancels the pending expiry timer
	next   time.Time   // when the pending timer fires
}

// New returns a service using the real clock.
func New() *Service { return NewWithClock(realClock{}) }

// NewWithClock returns a service using clock. The serial starts at the
// clock's Unix milliseconds, so serials keep increasing across restarts and
// a token from before a restart never hides a later change.
func NewWithClock(c Clock) *Service {
	return &Service{clock: c, rooms: map[string]*room{}, serial: c.Now().UnixMilli()}
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
	}
	s.mu.Unlock()
	if changed && s.Notify != nil {
		s.Notify(roomID)
	}
	return nil
}

// scheduleLocked makes sure the expiry timer fires at the earliest expiry.
func (s *Service) scheduleLocked() {
	var earliest time.Time
	for _, r := range s.rooms {
		for _, exp := range r.users {
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
			changed = append(changed, id)
		}
	}
	s.timer = nil
	s.scheduleLocked()
	s.mu.Unlock()
	if s.Notify != nil {
		for _, id := range changed {
			s.Notify(id)
		}
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
func (s *Service) Since(roomIDs []string, serial int64) (map[string][]string, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	initial := serial <= 0 || serial > s.serial
	out := map[string][]string{}
	for _, id := range roomIDs {
		r := s.rooms[id]
		if r == nil {
			continue
		}
		if initial && len(r.users) == 0 || !initial && r.changed <= serial {
			continue
		}
		users := make([]string, 0, len(r.users))
		for u := range r.users {
			users = append(users, u)
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
