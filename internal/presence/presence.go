// Package presence keeps users' presence in memory (spec: Client-Server API,
// "Presence"): the state they set, their status message and when they were
// last active, with a serial so /sync can ask what changed.
package presence

import (
	"context"
	"sort"
	"sync"
	"time"
	"unicode/utf8"

	"conclave/internal/matrix"
)

// Presence states.
const (
	Online      = "online"
	Offline     = "offline"
	Unavailable = "unavailable"
)

const (
	// IdleAfter is how long an online user may be inactive before being
	// reported unavailable (Synapse's idle timer).
	IdleAfter = 5 * time.Minute
	// ActiveWithin is how recent activity must be for currently_active.
	ActiveWithin = time.Minute
	// MaxStatusMsgLen bounds status_msg, in characters.
	MaxStatusMsgLen = 1024
	// MaxUsersPerSince bounds one Since call.
	MaxUsersPerSince = 100000
)

type entry struct {
	presence   string
	statusMsg  string
	lastActive time.Time
	changed    int64
	published  time.Time // with Publish: when activity was last published
}

// Update is one presence change as replicated between processes: a state
// the user chose (Presence set), or activity only (Presence "").
type Update struct {
	User      string  `json:"u"`
	Presence  string  `json:"p,omitempty"`
	StatusMsg *string `json:"m,omitempty"`
	Active    int64   `json:"a,omitempty"` // Unix ms of the activity; 0: none
}

// maxLag: see typing.MaxLag.
const maxLag = 100000

// publishActivityEvery is how often, with replication, a user's continued
// activity is published so other processes keep last_active_ago and idling
// right; a change of the reported state is published at once.
const publishActivityEvery = 30 * time.Second

// Status is a user's presence as clients see it.
type Status struct {
	Presence        string `json:"presence"`
	LastActiveAgo   *int64 `json:"last_active_ago,omitempty"`
	StatusMsg       string `json:"status_msg,omitempty"`
	CurrentlyActive *bool  `json:"currently_active,omitempty"`
}

// Event is an m.presence event for /sync.
type Event struct {
	Type    string `json:"type"`
	Sender  string `json:"sender"`
	Content Status `json:"content"`
}

// Service is the presence service.
type Service struct {
	// Notify, if set, is called (without locks held) when a user's presence
	// changed: the lead wakes the /sync of users sharing a room with them.
	Notify func(userID string)
	// Visible reports whether observer may see observed's presence; Synapse's
	// rule is sharing a room. Required for GetFor.
	Visible func(ctx context.Context, observer, observed string) (bool, error)
	// Publish, if set, replicates changes between processes sharing one
	// database, as typing.Service.Publish does: Set and Touch hand changes
	// to Publish, and the replication layer delivers every process's
	// changes to Apply with cluster-wide serials. nil: local serials.
	Publish func(u Update) error
	// Sent, if set, is called (without locks held) after a change a user
	// of this process made (Set, or activity that changed the state
	// reported): federation tells the servers sharing a room with them.
	// Changes from other processes (Apply) and other servers (SetRemote)
	// do not call it.
	Sent func(userID string)

	now    func() time.Time
	mu     sync.Mutex
	serial int64
	floor  int64 // see typing.Service
	users  map[string]*entry
}

// New returns a service on the real clock.
func New() *Service { return NewWithClock(time.Now) }

// NewWithClock returns a service on the given clock. As for typing, the
// serial starts at the clock's Unix milliseconds so it keeps increasing
// across restarts.
func NewWithClock(now func() time.Time) *Service {
	return &Service{now: now, users: map[string]*entry{}, serial: now().UnixMilli()}
}

// ValidState reports whether p is a presence state clients may set.
func ValidState(p string) bool { return p == Online || p == Offline || p == Unavailable }

// Set records the presence a user chose. statusMsg nil keeps the old message.
func (s *Service) Set(userID, presence string, statusMsg *string) error {
	if !ValidState(presence) {
		return matrix.InvalidParam("presence must be one of online, offline, unavailable")
	}
	if statusMsg != nil && utf8.RuneCountInString(*statusMsg) > MaxStatusMsgLen {
		return matrix.InvalidParam("status_msg is longer than %d characters", MaxStatusMsgLen)
	}
	if s.Publish != nil {
		u := Update{User: userID, Presence: presence, StatusMsg: statusMsg}
		if presence == Online {
			u.Active = s.now().UnixMilli()
		}
		if err := s.Publish(u); err != nil {
			return err
		}
		s.sent(userID)
		return nil
	}
	s.mu.Lock()
	e := s.entryLocked(userID)
	e.presence = presence
	if statusMsg != nil {
		e.statusMsg = *statusMsg
	}
	if presence == Online {
		e.lastActive = s.now()
	}
	s.serial++
	e.changed = s.serial
	s.mu.Unlock()
	s.notify(userID)
	s.sent(userID)
	return nil
}

// SetRemote records the presence another server reported for one of its
// users (an m.presence EDU): the state, the status message and when they
// were last active (zero: unknown).
func (s *Service) SetRemote(userID, presence, statusMsg string, lastActive time.Time) error {
	if !ValidState(presence) {
		return matrix.InvalidParam("presence must be one of online, offline, unavailable")
	}
	if utf8.RuneCountInString(statusMsg) > MaxStatusMsgLen {
		return matrix.InvalidParam("status_msg is longer than %d characters", MaxStatusMsgLen)
	}
	if s.Publish != nil {
		u := Update{User: userID, Presence: presence, StatusMsg: &statusMsg}
		if !lastActive.IsZero() {
			u.Active = lastActive.UnixMilli()
		}
		return s.Publish(u)
	}
	s.mu.Lock()
	e := s.entryLocked(userID)
	e.presence, e.statusMsg = presence, statusMsg
	if !lastActive.IsZero() {
		e.lastActive = lastActive
	}
	s.serial++
	e.changed = s.serial
	s.mu.Unlock()
	s.notify(userID)
	return nil
}

func (s *Service) sent(userID string) {
	if s.Sent != nil {
		s.Sent(userID)
	}
}

// Touch records activity (a /sync, a sent event): the user becomes online
// unless they chose unavailable. /sync's set_presence=offline should not
// call it.
func (s *Service) Touch(userID string) {
	if s.Publish != nil {
		s.publishTouch(userID)
		return
	}
	s.mu.Lock()
	e := s.entryLocked(userID)
	now := s.now()
	wasVisible := s.effectiveLocked(e, now)
	e.lastActive = now
	if e.presence == Offline || e.presence == "" {
		e.presence = Online
	}
	changed := s.effectiveLocked(e, now) != wasVisible
	if changed {
		s.serial++
		e.changed = s.serial
	}
	s.mu.Unlock()
	if changed {
		s.notify(userID)
		s.sent(userID)
	}
}

// publishTouch publishes activity when it changes the reported state (at
// most once a second) or every publishActivityEvery; the state changes
// only when Apply receives it.
func (s *Service) publishTouch(userID string) {
	s.mu.Lock()
	e := s.entryLocked(userID)
	now := s.now()
	before := s.effectiveLocked(e, now)
	after := Online
	if e.presence == Unavailable {
		after = Unavailable
	}
	since := now.Sub(e.published)
	if since < publishActivityEvery && (before == after || since < time.Second) {
		s.mu.Unlock()
		return
	}
	e.published = now
	s.mu.Unlock()
	u := Update{User: userID, Active: now.UnixMilli()}
	if before != after {
		// Synchronously, like the local case: the request that made the
		// user online sees it applied (e.g. its own /sync answer).
		if s.Publish(u) == nil { // best effort: a later Touch retries
			s.sent(userID)
		}
		return
	}
	go s.Publish(u)
}

// Apply applies a change delivered by the replication layer (see Publish)
// with its cluster-wide serial; serials already passed are ignored.
func (s *Service) Apply(u Update, serial int64) {
	s.mu.Lock()
	if serial <= s.serial {
		s.mu.Unlock()
		return
	}
	s.serial = serial
	e := s.entryLocked(u.User)
	now := s.now()
	before := s.statusLocked(e, now)
	if active := time.UnixMilli(u.Active); u.Active > 0 && active.After(e.lastActive) {
		e.lastActive = active
	}
	changed := true
	if u.Presence != "" {
		e.presence = u.Presence
		if u.StatusMsg != nil {
			e.statusMsg = *u.StatusMsg
		}
	} else {
		if e.presence == Offline || e.presence == "" {
			e.presence = Online
		}
		changed = s.effectiveLocked(e, now) != before.Presence
	}
	if changed {
		e.changed = serial
	}
	s.mu.Unlock()
	if changed {
		s.notify(u.User)
	}
}

// Resume is called by the replication layer when it (re)starts listening;
// see typing.Service.Resume.
func (s *Service) Resume(serial int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// The cluster's serial is the authority (the one this process started
	// with counts changes it no longer has to compare with).
	s.serial = serial
	s.floor = serial
}

func (s *Service) notify(userID string) {
	if s.Notify != nil {
		s.Notify(userID)
	}
}

func (s *Service) entryLocked(userID string) *entry {
	e := s.users[userID]
	if e == nil {
		e = &entry{presence: Offline}
		s.users[userID] = e
	}
	return e
}

// effectiveLocked is the state reported: online users idle for IdleAfter
// are unavailable.
func (s *Service) effectiveLocked(e *entry, now time.Time) string {
	if e.presence == "" {
		return Offline
	}
	if e.presence == Online && now.Sub(e.lastActive) > IdleAfter {
		return Unavailable
	}
	return e.presence
}

func (s *Service) statusLocked(e *entry, now time.Time) Status {
	st := Status{Presence: s.effectiveLocked(e, now), StatusMsg: e.statusMsg}
	if !e.lastActive.IsZero() {
		ago := max(now.Sub(e.lastActive).Milliseconds(), 0)
		st.LastActiveAgo = &ago
		active := st.Presence == Online && now.Sub(e.lastActive) < ActiveWithin
		st.CurrentlyActive = &active
	}
	return st
}

// Get returns a user's presence (offline if never seen).
func (s *Service) Get(userID string) Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.users[userID]
	if e == nil {
		return Status{Presence: Offline}
	}
	return s.statusLocked(e, s.now())
}

// GetFor returns target's presence as observer may see it: 403 unless
// observer is target or Visible says yes (as Synapse answers).
func (s *Service) GetFor(ctx context.Context, observer, target string) (Status, error) {
	if observer != target {
		ok := false
		if s.Visible != nil {
			var err error
			if ok, err = s.Visible(ctx, observer, target); err != nil {
				return Status{}, err
			}
		}
		if !ok {
			return Status{}, matrix.Forbidden("You are not allowed to see their presence")
		}
	}
	return s.Get(target), nil
}

// Serial is the current serial.
func (s *Service) Serial() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.serial
}

// Since returns m.presence events for those of userIDs (the users sharing a
// room with the syncing user, and the user) whose presence changed after
// serial, sorted by user ID, and the serial to pass next time. serial 0 or a
// serial from the future returns every known user of the list. With
// replication a serial ahead of this process reports nothing and is handed
// back, and one below the floor gets everything (as typing.Service.Since).
func (s *Service) Since(userIDs []string, serial int64) ([]Event, int64) {
	if len(userIDs) > MaxUsersPerSince {
		userIDs = userIDs[:MaxUsersPerSince]
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Publish != nil && serial > s.serial && serial-s.serial <= maxLag {
		return nil, serial
	}
	initial := serial <= 0 || serial > s.serial || serial < s.floor
	now := s.now()
	var out []Event
	seen := make(map[string]bool, len(userIDs))
	for _, u := range userIDs {
		e := s.users[u]
		if e == nil || seen[u] || !initial && e.changed <= serial {
			continue
		}
		seen[u] = true
		out = append(out, Event{Type: "m.presence", Sender: u, Content: s.statusLocked(e, now)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Sender < out[j].Sender })
	return out, s.serial
}
