package syncer

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime/debug"

	"conclave/internal/changes"
	"conclave/internal/store"
)

// What other sync endpoints (simplified sliding sync, internal/slidingsync)
// share with /sync: the notifier, the change tracker and its caches, the
// sources and the build slots. There is one copy of each: sliding sync asks
// these, it keeps no second notifier or cache of its own.

// Register registers a long-poll of user with the notifier before it looks
// for news: the channel is signalled by the next Wake of the user. The
// returned func unregisters it.
func (n *Notifier) Register(user string) (<-chan struct{}, func()) {
	w, unregister := n.register(user)
	return w.ch, unregister
}

// Sources returns the sources the service reports on.
func (s *Service) Sources() Sources { return s.src }

// Tracker returns the change tracker (nil when the fast paths are off).
func (s *Service) Tracker() *changes.Tracker { return s.fast.t }

// Position is the upper bound of a response built now for a client at
// since: the stream position this process has heard of (with several
// processes, it first waits a moment to hear a since another process
// handed out), never below since.
func (s *Service) Position(ctx context.Context, since int64) (int64, error) {
	t := s.fast.t
	if t == nil {
		return s.store.MaxStreamPos(ctx)
	}
	upto := t.Heard()
	if since > upto && t.Fed() {
		t.WaitHeard(since)
		upto = t.Heard()
	}
	return upto, nil
}

// Memberships returns every membership of the user (cached while the
// tracker says they did not change).
func (s *Service) Memberships(ctx context.Context, userID string) ([]store.Membership, error) {
	f := &s.fast
	mk := userKey(changes.Memberships, userID)
	if ms, ok := cached(f, f.members, userID, mk); ok {
		return ms, nil
	}
	tick := f.t.Tick()
	ms, err := s.store.UserMemberships(ctx, userID)
	if err != nil {
		return nil, err
	}
	keep(f, f.members, userID, mk, tick, ms)
	return ms, nil
}

// IgnoredUsers returns the users userID ignores (cached like /sync's).
func (s *Service) IgnoredUsers(ctx context.Context, userID string) (map[string]bool, error) {
	b := &builder{s: s, ctx: ctx, req: &Request{UserID: userID}}
	return b.ignoredUsers()
}

// UnreadCounts returns the user's notification and highlight counts in a
// room at upto (through /sync's cache).
func (s *Service) UnreadCounts(ctx context.Context, roomID, userID string, upto int64) (store.Unread, error) {
	return s.unread.counts(ctx, s.store, roomID, userID, upto)
}

// StrippedState returns the stripped state /sync sends with the user's
// invite or knock m (invite_state / knock_state).
func (s *Service) StrippedState(ctx context.Context, userID string, m store.Membership) ([]json.RawMessage, error) {
	b := &builder{s: s, ctx: ctx, req: &Request{UserID: userID}}
	return b.strippedRoom(m)
}

// FromIgnored reports whether the user's invite m was sent by a user they
// ignore (such invites are not shown).
func (s *Service) FromIgnored(ctx context.Context, userID string, m store.Membership) bool {
	b := &builder{s: s, ctx: ctx, req: &Request{UserID: userID}}
	return b.fromIgnored(m)
}

// Apart runs fn in one of the build slots /sync responses are built in, on
// a goroutine of its own (see buildApart: bounded concurrency, and a
// shallow stack for the long-poll that waits afterwards).
func (s *Service) Apart(ctx context.Context, fn func() error) error {
	select {
	case s.builds <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.builds }()
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("panic building a sync response: %v\n%s", p, debug.Stack())
			}
		}()
		err = fn()
	}()
	<-done
	return err
}
