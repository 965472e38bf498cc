package accounts

import (
	"conclave/internal/changes"
	"conclave/internal/lru"
	"conclave/internal/store"
)

// maxCachedSessions bounds the session cache (least recently used tokens
// are forgotten).
const maxCachedSessions = 100_000

// sessionCache remembers resolved access tokens so that a request does not
// look its token up in the store (a tenth of the server's CPU under load:
// every /sync long-poll authenticates). It is only correct when this process
// makes every change to tokens and devices — the homeserver turns it on only
// then, with the change tracker of every write.
//
// Every write that can revoke a token or change what a session says is
// marked in the tracker under the user's Sessions key before it commits
// (revoking). A cached session carries the tick at which its lookup began,
// and is served only while the tracker says the user's sessions did not
// change since: a lookup racing a revocation is never cached, and an entry
// cached before one is never served after it began.
type sessionCache struct {
	t      *changes.Tracker // nil: off
	byHash *lru.Cache[[32]byte, cachedSession]
}

type cachedSession struct {
	tick uint64
	sess store.Session
}

// CacheSessions turns the session cache on with t, the tracker of every
// write to the database. Call it only when no other process shares the
// database.
func (s *Service) CacheSessions(t *changes.Tracker) {
	s.sessions = sessionCache{t: t, byHash: lru.New[[32]byte, cachedSession](maxCachedSessions)}
}

func sessionsKey(userID string) changes.Key {
	return changes.Key{Kind: changes.Sessions, Subject: userID}
}

// get returns the cached session for a token hash; otherwise ticket is what
// put needs to cache the store's answer.
func (c *sessionCache) get(h [32]byte) (sess store.Session, ok bool, ticket uint64) {
	if c.t == nil {
		return store.Session{}, false, 0
	}
	ticket = c.t.Tick()
	e, ok := c.byHash.Get(h)
	if !ok {
		return store.Session{}, false, ticket
	}
	if !c.t.Unchanged(sessionsKey(e.sess.UserID), e.tick) {
		c.byHash.Delete(h)
		return store.Session{}, false, ticket
	}
	return e.sess, true, 0
}

// put caches sess, read from the store after get gave ticket, unless the
// user's sessions changed meanwhile.
func (c *sessionCache) put(h [32]byte, sess store.Session, ticket uint64) {
	if c.t == nil || !c.t.Unchanged(sessionsKey(sess.UserID), ticket) {
		return
	}
	c.byHash.Put(h, cachedSession{ticket, sess})
}

// revoking marks a change of userID's sessions before the write that makes
// it; call the result after the write.
func (c *sessionCache) revoking(userID string) func() {
	w := c.t.Begin(sessionsKey(userID))
	return func() { w.Done(0) }
}
