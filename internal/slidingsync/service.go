// Package slidingsync serves simplified sliding sync (MSC4186, the
// org.matrix.simplified_msc3575 endpoint Element X and matrix-js-sdk speak):
// lists of the user's rooms ordered by recency (bump_stamp) and cut into
// windows, room subscriptions, each room's required state and timeline, and
// the to_device, e2ee, account_data, receipts and typing extensions; and the
// connections (positions, what each room was sent up to), kept in the store.
//
// It owns no second copy of /sync's machinery: stream positions, the
// notifier that wakes long-polls, the change tracker and its caches
// (memberships, unread counts, ignored users), the sources of to-device
// messages, key counts, device lists, typing and receipts, and the build
// slots all come from internal/syncer (syncer/shared.go). What is new here
// is which rooms to send and how much of each.
package slidingsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"conclave/internal/changes"
	"conclave/internal/lru"
	"conclave/internal/matrix"
	"conclave/internal/room"
	"conclave/internal/store"
	"conclave/internal/syncer"
	"conclave/internal/threadsubs"
)

// Store is what sliding sync reads and writes itself.
type Store interface {
	store.Events
	store.SyncQueries
	store.AccountData
	store.Receipts
	store.SlidingSync
}

// Service is the sliding sync service.
type Service struct {
	store Store
	rooms *room.Service
	sync  *syncer.Service
	now   func() time.Time
	// bumps caches each room's bump stamp with the tracker's tick.
	bumps *lru.Cache[string, bump]
	// stamps keeps each user's rooms' stamps at their last build.
	stamps *lru.Cache[string, *userStamps]
	// ThreadSubs serves the thread_subscriptions extension; nil: it answers
	// nothing.
	ThreadSubs *threadsubs.Service
	// saving bounds the stamps being saved at once (saveStamps).
	saving chan struct{}
}

type bump struct {
	tick  uint64
	upto  int64 // the position it was computed at
	stamp int64
}

// Cache bounds: rooms' stamps, users' stamps (a user in 1,000 rooms costs
// about 60 KB).
const (
	maxCachedBumps      = 200_000
	maxCachedUserStamps = 1000
)

// New returns the service.
func New(st Store, rooms *room.Service, sync *syncer.Service) *Service {
	return &Service{store: st, rooms: rooms, sync: sync, now: time.Now, bumps: lru.New[string, bump](maxCachedBumps),
		stamps: lru.New[string, *userStamps](maxCachedUserStamps), saving: make(chan struct{}, 2)}
}

// MaxTimeout caps a long-poll like /sync's.
const MaxTimeout = syncer.MaxTimeout

// Sync answers one request of userID's device at pos ("" for a new
// connection), waiting up to timeout for news when it has none. req is the
// request decoded from body, the request as sent: a waiting long-poll keeps
// only body and decodes it again when woken (less memory per idle client).
func (s *Service) Sync(ctx context.Context, userID, deviceID, pos string, timeout time.Duration, req *Request, body []byte) (*Response, error) {
	return s.syncWith(ctx, userID, deviceID, pos, timeout, req, body, decode)
}

// syncWith answers a request of either encoding; dec decodes body again for
// a long-poll woken.
func (s *Service) syncWith(ctx context.Context, userID, deviceID, pos string, timeout time.Duration, req *Request, body []byte, dec func([]byte) (*Request, error)) (*Response, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	// Two requests on one connection at once (a client abandoning a
	// long-poll to change its ranges): the later writer finds the
	// connection moved on and starts again from its position.
	for attempt := 0; ; attempt++ {
		resp, err := s.syncOnce(ctx, userID, deviceID, pos, timeout, req, body, dec)
		if errors.Is(err, store.ErrConflict) && attempt < 3 {
			continue
		}
		if errors.Is(err, store.ErrConflict) {
			return nil, errUnknownPos
		}
		return resp, err
	}
}

func decode(body []byte) (*Request, error) {
	var req Request
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, matrix.BadJSON("Invalid sliding sync request: %v", err)
	}
	return &req, nil
}

func (s *Service) syncOnce(ctx context.Context, userID, deviceID, pos string, timeout time.Duration, req *Request, body []byte, dec func([]byte) (*Request, error)) (*Response, error) {
	// Opened on a goroutine of its own, like the build: the store driver's
	// deep frames would otherwise stay on the stack of the long-poll that
	// then waits.
	var ss *session
	var err error
	done := make(chan struct{})
	var created <-chan error // a new connection's row, written while it builds
	if pos == "" {
		ss, created = s.create(ctx, userID, deviceID, req.ConnID)
		close(done)
	} else {
		go func() {
			defer close(done)
			defer func() {
				if p := recover(); p != nil {
					err = fmt.Errorf("panic opening a sliding sync connection: %v\n%s", p, debug.Stack())
				}
			}()
			ss, err = s.open(ctx, userID, deviceID, req.ConnID, pos)
		}()
	}
	<-done
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(min(timeout, MaxTimeout))
	n := s.sync.Notifier()
	for {
		woken, unregister := n.Register(userID)
		var b *build
		err := s.sync.Apart(ctx, func() error {
			if req == nil {
				var err error
				if req, err = dec(body); err != nil {
					return err
				}
			}
			b = &build{s: s, ctx: ctx, user: userID, device: deviceID, req: req, ss: ss}
			return b.run()
		})
		if created != nil {
			// A new connection never waits: its row must be there before
			// its position is recorded.
			if cerr := <-created; err == nil {
				err = cerr
			}
		}
		if err != nil {
			unregister()
			return nil, err
		}
		wait := time.Until(deadline)
		if pos == "" || !b.empty() || wait <= 0 {
			unregister()
			return s.finish(ctx, ss, b)
		}
		b.trim()
		req = nil // decoded again if woken
		timer := time.NewTimer(wait)
		select {
		case <-woken:
			timer.Stop()
			unregister()
			continue
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
		case <-n.Closed():
			timer.Stop()
		}
		unregister()
		return s.finish(ctx, ss, b)
	}
}

// finish records the response's position (a response with nothing new
// keeps the client's position: nothing to record).
func (s *Service) finish(ctx context.Context, ss *session, b *build) (*Response, error) {
	if b.empty() && ss.seq != 0 {
		b.resp.Pos = formatPos(ss.conn.ID, ss.seq)
		return b.resp, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err // the client is gone: it takes no position
	}
	next, err := s.advance(context.WithoutCancel(ctx), ss, b.state, b.sent)
	if errors.Is(err, store.ErrConflict) && ss.seq == 0 {
		// Another request started the same connection meanwhile and
		// replaced this one: the last start wins. This answer stands; its
		// position is unknown from now on, and the client starts again
		// when it uses it (M_UNKNOWN_POS).
		b.resp.Pos = formatPos(ss.conn.ID, ss.latest+1)
		return b.resp, nil
	}
	if err != nil {
		return nil, err
	}
	b.resp.Pos = next
	return b.resp, nil
}

func roomKey(kind changes.Kind, roomID string) changes.Key {
	return changes.Key{Kind: kind, Subject: roomID}
}
