package syncer

import (
	"conclave/internal/changes"
	"conclave/internal/lru"
	"conclave/internal/store"
)

// The fast paths of /sync, on when the homeserver gives the service the
// change tracker (TrackChanges: this process is the database's only
// writer). Every decision to skip a query is a question to the tracker
// about the sync's own range (since, upto] — "may the user's account data
// have changed in it?" — and every cached value is kept with the tick it
// was loaded at and used only while the tracker says its subject did not
// change since. Writers mark their changes before they commit, so neither
// can miss a change that is committed at or below the sync's upper bound.
// The caches are bounded (lru); forgetting an entry costs one query.

// Bounds on the caches (entries).
const (
	maxCachedUsers   = 100_000 // memberships, ignore lists
	maxCachedDevices = 200_000 // key counts, to-device acknowledgements
)

type fastPaths struct {
	t         *changes.Tracker // nil: every sync asks the store
	members   *lru.Cache[string, ticked[[]store.Membership]]
	ignored   *lru.Cache[string, ticked[map[string]bool]]
	keyCounts *lru.Cache[deviceKey, ticked[keyCounts]]
	// acked: the position up to which a device's to-device messages were
	// deleted by a sync that looked (the since it looked from). A sync may
	// skip the to-device query only when nothing was sent to the user after
	// min(since, acked): nothing new to deliver, and nothing delivered that
	// still awaits its deletion.
	acked *lru.Cache[deviceKey, int64]
}

type ticked[T any] struct {
	tick uint64
	val  T
}

type keyCounts struct {
	otk      map[string]int
	fallback []string
}

type deviceKey struct{ user, device string }

// TrackChanges turns the fast paths on with t, the tracker of every write
// to the database.
func (s *Service) TrackChanges(t *changes.Tracker) {
	s.fast = fastPaths{
		t:         t,
		members:   lru.New[string, ticked[[]store.Membership]](maxCachedUsers),
		ignored:   lru.New[string, ticked[map[string]bool]](maxCachedUsers),
		keyCounts: lru.New[deviceKey, ticked[keyCounts]](maxCachedDevices),
		acked:     lru.New[deviceKey, int64](maxCachedDevices),
	}
}

// cached returns c's value for key if its subject k did not change since it
// was loaded.
func cached[K comparable, T any](f *fastPaths, c *lru.Cache[K, ticked[T]], key K, k changes.Key) (T, bool) {
	var zero T
	if f.t == nil {
		return zero, false
	}
	e, ok := c.Get(key)
	if !ok || !f.t.Unchanged(k, e.tick) {
		return zero, false
	}
	return e.val, true
}

// keep caches val, loaded from the store after tick, unless its subject k
// changed meanwhile.
func keep[K comparable, T any](f *fastPaths, c *lru.Cache[K, ticked[T]], key K, k changes.Key, tick uint64, val T) {
	if f.t != nil && f.t.Unchanged(k, tick) {
		c.Put(key, ticked[T]{tick, val})
	}
}

func userKey(kind changes.Kind, userID string) changes.Key {
	return changes.Key{Kind: kind, Subject: userID}
}

func roomKey(kind changes.Kind, roomID string) changes.Key {
	return changes.Key{Kind: kind, Subject: roomID}
}

// ackedThrough returns the position up to which the device's to-device
// messages are known deleted.
func (f *fastPaths) ackedThrough(user, device string) (int64, bool) {
	if f.t == nil {
		return 0, false
	}
	return f.acked.Get(deviceKey{user, device})
}

// setAcked records that the device's to-device messages up to pos were
// deleted.
func (f *fastPaths) setAcked(user, device string, pos int64) {
	if f.t == nil {
		return
	}
	f.acked.Update(deviceKey{user, device}, func(old int64, ok bool) (int64, bool) {
		return max(old, pos), true
	})
}
