package syncer

import (
	"sync"

	"conclave/internal/store"
)

// Kind is a kind of per-user change /sync reports besides room events.
type Kind int

// The kinds whose store queries a /sync may skip.
const (
	KindKeys        Kind = iota // to-device messages (and device keys)
	KindAccountData             // account data, the ignore list among it
	KindReceipts                // read receipts in the user's rooms
	KindMemberships             // the user's own memberships (join, leave, forget...)
	KindKeyCounts               // one-time and fallback key counts of the user's devices
	numKinds
)

// changes lets a device's next /sync skip queries for kinds of change that
// cannot have happened since its previous one. Every change of a kind bumps
// a per-user counter (Service.Changed, called by the services' hooks before
// they wake anyone). A /sync snapshots the user's counters before it reads
// the stream's upper bound and, when it finished without truncation,
// remembers (upper bound, snapshot) for the device. The device's next /sync
// from exactly that upper bound may skip a kind whose counter is unchanged:
// a change committed before the remembered upper bound was read was visible
// to the previous sync's queries, and one committed after it bumped the
// counter after the snapshot (the hook runs after the commit).
//
// Only exact when this process sees every change (no other process on the
// database): off otherwise.
type changes struct {
	mu    sync.Mutex
	on    bool
	users map[string]*[numKinds]uint64
	memo  map[deviceKey]syncMemo
	// Values loaded by an earlier sync, with the counter of their kind
	// snapshotted before they were read: valid while the counter is still
	// the same (a later change bumps it after committing).
	members    map[string]versioned[[]store.Membership]
	memberRows int
	keyCounts  map[deviceKey]versioned[keyCounts]
}

type versioned[T any] struct {
	v   uint64
	val T
}

type keyCounts struct {
	otk      map[string]int
	fallback []string
}

// maxMemberRows bounds the memberships cached across users.
const maxMemberRows = 1_000_000

type deviceKey struct{ user, device string }

type syncMemo struct {
	upto    int64
	v       [numKinds]uint64
	ignored map[string]bool // the ignore list that sync loaded, if it did
	hasIgn  bool
	// toDevice: that sync delivered to-device messages, which the next
	// sync acknowledges (deletes), so it must not skip the to-device query.
	toDevice bool
}

// maxTracked bounds both maps; when full they start over (every device
// then takes the slow path once).
const maxTracked = 200_000

// TrackChanges turns the skipping on: call it only when this process is the
// database's only writer.
func (s *Service) TrackChanges() {
	s.changes.mu.Lock()
	defer s.changes.mu.Unlock()
	s.changes.on = true
	s.changes.users = make(map[string]*[numKinds]uint64)
	s.changes.memo = make(map[deviceKey]syncMemo)
	s.changes.resetCaches()
}

func (c *changes) resetCaches() {
	c.members = make(map[string]versioned[[]store.Membership])
	c.memberRows = 0
	c.keyCounts = make(map[deviceKey]versioned[keyCounts])
}

// Changed records a change of kind k concerning users. Hooks call it after
// the change is committed and before they wake the users' long-polls.
func (s *Service) Changed(k Kind, users ...string) {
	c := &s.changes
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.on {
		return
	}
	for _, u := range users {
		v := c.users[u]
		if v == nil {
			if len(c.users) >= maxTracked {
				c.users = make(map[string]*[numKinds]uint64)
				c.memo = make(map[deviceKey]syncMemo)
				c.resetCaches()
			}
			v = new([numKinds]uint64)
			c.users[u] = v
		}
		v[k]++
	}
}

// snapshot returns the user's counters and the device's memo (ok false
// when there is none or tracking is off).
func (c *changes) snapshot(user, device string) (v [numKinds]uint64, memo syncMemo, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.on {
		return v, memo, false
	}
	if p := c.users[user]; p != nil {
		v = *p
	}
	memo, ok = c.memo[deviceKey{user, device}]
	return v, memo, ok
}

func (c *changes) remember(user, device string, m syncMemo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.on {
		return
	}
	if len(c.memo) >= maxTracked {
		c.memo = make(map[deviceKey]syncMemo)
	}
	c.memo[deviceKey{user, device}] = m
}

// memberships returns the user's cached memberships if still valid for
// counter value v.
func (c *changes) memberships(user string, v uint64) ([]store.Membership, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.members[user]
	if !c.on || !ok || e.v != v {
		return nil, false
	}
	return e.val, true
}

func (c *changes) putMemberships(user string, v uint64, ms []store.Membership) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.on {
		return
	}
	if c.memberRows+len(ms) > maxMemberRows {
		c.members = make(map[string]versioned[[]store.Membership])
		c.memberRows = 0
	}
	c.memberRows += len(ms) - len(c.members[user].val)
	c.members[user] = versioned[[]store.Membership]{v, ms}
}

func (c *changes) counts(user, device string, v uint64) (keyCounts, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.keyCounts[deviceKey{user, device}]
	if !c.on || !ok || e.v != v {
		return keyCounts{}, false
	}
	return e.val, true
}

func (c *changes) putCounts(user, device string, v uint64, kc keyCounts) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.on {
		return
	}
	if len(c.keyCounts) >= maxTracked {
		c.keyCounts = make(map[deviceKey]versioned[keyCounts])
	}
	c.keyCounts[deviceKey{user, device}] = versioned[keyCounts]{v, kc}
}
