package accounts

import (
	"sync"

	"conclave/internal/store"
)

// maxCachedSessions bounds the session cache; when full it starts over.
const maxCachedSessions = 100_000

// sessionCache remembers resolved access tokens so that a request does not
// look its token up in the store (a tenth of the server's CPU under load:
// every /sync long-poll authenticates). It is only correct when this process
// makes every change to tokens and devices — the homeserver turns it on only
// then — and every method that revokes a token forgets the user's entries
// after its store write.
//
// A lookup racing a revocation must not put the revoked session back: every
// forget bumps a counter; a lookup notes it before asking the store and
// caches the answer only if it is unchanged afterwards.
type sessionCache struct {
	mu      sync.Mutex
	on      bool
	byHash  map[[32]byte]store.Session
	byUser  map[string][][32]byte
	revoked uint64
}

// CacheSessions turns the session cache on. Call it only when no other
// process shares the database.
func (s *Service) CacheSessions() {
	c := &s.sessions
	c.mu.Lock()
	defer c.mu.Unlock()
	c.on = true
	c.reset()
}

func (c *sessionCache) reset() {
	c.byHash = make(map[[32]byte]store.Session)
	c.byUser = make(map[string][][32]byte)
	c.revoked++
}

// get returns the cached session for a token hash; otherwise ticket is what
// put needs to cache the store's answer (0: don't).
func (c *sessionCache) get(h [32]byte) (sess store.Session, ok bool, ticket uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.on {
		return store.Session{}, false, 0
	}
	if sess, ok := c.byHash[h]; ok {
		return sess, true, 0
	}
	return store.Session{}, false, c.revoked
}

// put caches sess unless something was revoked since get gave the ticket.
func (c *sessionCache) put(h [32]byte, sess store.Session, ticket uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.on || ticket == 0 || ticket != c.revoked {
		return
	}
	if len(c.byHash) >= maxCachedSessions {
		c.reset()
		return
	}
	c.byHash[h] = sess
	c.byUser[sess.UserID] = append(c.byUser[sess.UserID], h)
}

// forget drops every cached session of userID. Called after every store
// write that can revoke a token or change what a session says.
func (c *sessionCache) forget(userID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.on {
		return
	}
	for _, h := range c.byUser[userID] {
		delete(c.byHash, h)
	}
	delete(c.byUser, userID)
	c.revoked++
}
