// Package threadsubs owns users' thread subscriptions (MSC4306): subscribing
// to a thread (manually, or automatically because of an event in it),
// unsubscribing, reading one, and the changes since a stream position that
// sliding sync's thread_subscriptions extension (MSC4308) and the
// /thread_subscriptions endpoint report. The push rules MSC4306 adds on top
// are not here (internal/push).
package threadsubs

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"conclave/internal/changes"
	"conclave/internal/matrix"
	"conclave/internal/store"
)

// Error codes, under their unstable names (MSC4306 "Unstable amendments").
const (
	ErrConflictingUnsubscription = "IO.ELEMENT.MSC4306.M_CONFLICTING_UNSUBSCRIPTION"
	ErrNotInThread               = "IO.ELEMENT.MSC4306.M_NOT_IN_THREAD"
)

// Rooms is what the service asks the room service: an event the user may
// see (M_NOT_FOUND otherwise).
type Rooms interface {
	EventForUser(ctx context.Context, roomID, eventID, userID string) (*store.StoredEvent, error)
}

// Service is the thread subscription service.
type Service struct {
	store store.ThreadSubscriptions
	rooms Rooms
	// Notify, if set, is called with the user after a change (their sliding
	// sync wakes).
	Notify func(userIDs ...string)
	// Changes, if set, has every write marked before it commits.
	Changes *changes.Tracker
}

// New returns the service.
func New(st store.ThreadSubscriptions, rooms Rooms) *Service {
	return &Service{store: st, rooms: rooms}
}

// maxAttempts bounds the retries of a change that raced another of the
// same thread (several devices subscribing on one mention).
const maxAttempts = 5

// root checks that the thread's root is an event the user may see (404
// otherwise: MSC4306 answers M_NOT_FOUND for an unknown or inaccessible
// thread).
func (s *Service) root(ctx context.Context, userID, roomID, threadID string) (*store.StoredEvent, error) {
	if !matrix.ValidRoomID(roomID) {
		return nil, matrix.InvalidParam("Invalid room ID")
	}
	if len(threadID) == 0 || threadID[0] != '$' || len(threadID) > 255 {
		return nil, matrix.InvalidParam("Invalid event ID")
	}
	ev, err := s.rooms.EventForUser(ctx, roomID, threadID, userID)
	if err != nil {
		var me *matrix.Error
		if errors.As(err, &me) && (me.Status == http.StatusForbidden || me.Status == http.StatusNotFound) {
			return nil, matrix.NotFound("Thread not found")
		}
		return nil, err
	}
	return ev, nil
}

// Get returns whether the user's subscription to the thread is automatic;
// M_NOT_FOUND when not subscribed (or the thread is unknown or hidden).
func (s *Service) Get(ctx context.Context, userID, roomID, threadID string) (automatic bool, err error) {
	if _, err := s.root(ctx, userID, roomID, threadID); err != nil {
		return false, err
	}
	t, err := s.store.ThreadSubscription(ctx, userID, roomID, threadID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !t.Subscribed) {
		return false, matrix.NotFound("Not subscribed")
	}
	return t.Automatic, err
}

// Subscribe subscribes the user to the thread: manually when cause is "",
// else automatically because of the event cause, which must be the root or
// in the thread (400 M_NOT_IN_THREAD). An automatic subscription caused by
// an event the server had when the user last unsubscribed is refused (409
// M_CONFLICTING_UNSUBSCRIPTION: MSC4306 "Server-side automatic subscription
// ordering", by stream position); one over an existing subscription changes
// nothing, and a manual one makes an automatic subscription manual.
func (s *Service) Subscribe(ctx context.Context, userID, roomID, threadID, cause string) error {
	if _, err := s.root(ctx, userID, roomID, threadID); err != nil {
		return err
	}
	var causePos int64
	if cause != "" {
		if len(cause) == 0 || cause[0] != '$' || len(cause) > 255 {
			return matrix.InvalidParam("automatic must be an event ID")
		}
		ev, err := s.rooms.EventForUser(ctx, roomID, cause, userID)
		if err != nil {
			var me *matrix.Error
			if errors.As(err, &me) && (me.Status == http.StatusForbidden || me.Status == http.StatusNotFound) {
				return matrix.Errorf(http.StatusBadRequest, ErrNotInThread, "The automatic subscription's event is not in the thread")
			}
			return err
		}
		if cause != threadID && !inThread(ev, threadID) {
			return matrix.Errorf(http.StatusBadRequest, ErrNotInThread, "The automatic subscription's event is not in the thread")
		}
		causePos = ev.Pos
	}
	return s.change(ctx, userID, roomID, threadID, func(t store.ThreadSubscription, found bool) (write bool, automatic bool, err error) {
		if cause == "" {
			return !found || !t.Subscribed || t.Automatic, false, nil
		}
		if found && t.Subscribed {
			return false, false, nil // manual or automatic already
		}
		if found && causePos <= t.UnsubscribedPos {
			return false, false, matrix.Errorf(http.StatusConflict, ErrConflictingUnsubscription,
				"The user unsubscribed from this thread after the event that would subscribe them")
		}
		return true, true, nil
	}, true)
}

// Unsubscribe removes the user's subscription to the thread (nothing to
// remove is fine: MSC4306 answers {} for idempotence).
func (s *Service) Unsubscribe(ctx context.Context, userID, roomID, threadID string) error {
	if _, err := s.root(ctx, userID, roomID, threadID); err != nil {
		return err
	}
	return s.change(ctx, userID, roomID, threadID, func(t store.ThreadSubscription, found bool) (bool, bool, error) {
		return found && t.Subscribed, false, nil
	}, false)
}

// change reads the row, lets decide say whether (and how) to write it, and
// writes it only if nobody changed it meanwhile, trying again otherwise.
func (s *Service) change(ctx context.Context, userID, roomID, threadID string,
	decide func(t store.ThreadSubscription, found bool) (write, automatic bool, err error), subscribed bool) error {
	for attempt := 0; ; attempt++ {
		t, err := s.store.ThreadSubscription(ctx, userID, roomID, threadID)
		found := err == nil
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		write, automatic, err := decide(t, found)
		if err != nil || !write {
			return err
		}
		w := s.Changes.Begin(changes.Key{Kind: changes.AccountData, Subject: userID})
		pos, swapped, err := s.store.SwapThreadSubscription(w.Context(ctx), userID, roomID, threadID, subscribed, automatic, t.Pos)
		w.Done(pos)
		if err != nil {
			return err
		}
		if swapped {
			if s.Notify != nil {
				s.Notify(userID)
			}
			return nil
		}
		if attempt == maxAttempts {
			return matrix.Errorf(http.StatusConflict, matrix.ErrUnknown, "The thread subscription is changing: try again")
		}
	}
}

// inThread reports whether ev is a threaded reply to root.
func inThread(ev *store.StoredEvent, root string) bool {
	var e struct {
		Content struct {
			RelatesTo struct {
				RelType string `json:"rel_type"`
				EventID string `json:"event_id"`
			} `json:"m.relates_to"`
		} `json:"content"`
	}
	return json.Unmarshal(ev.JSON, &e) == nil && e.Content.RelatesTo.RelType == "m.thread" && e.Content.RelatesTo.EventID == root
}

// Change is one thread's latest change, as MSC4308 reports it.
type Change = store.ThreadSubscription

// MaxLimit bounds the changes one answer lists (Synapse's MAX_LIMIT).
const MaxLimit = 512

// DefaultLimit is MSC4308's default.
const DefaultLimit = 100

// ChangesBetween lists the user's thread subscription changes in (after, upto],
// the latest limit of them (oldest first), and whether older ones in the
// range were left out.
func (s *Service) ChangesBetween(ctx context.Context, userID string, after, upto int64, limit int) ([]Change, bool, error) {
	limit = min(max(limit, 1), MaxLimit)
	cs, err := s.store.ThreadSubscriptionChanges(ctx, userID, after, upto, limit+1)
	if err != nil {
		return nil, false, err
	}
	more := len(cs) > limit
	if more {
		cs = cs[1:] // the oldest one is the extra
	}
	return cs, more, nil
}

// Encoded is the subscribed / unsubscribed maps of MSC4308 (room → thread →
// {automatic, bump_stamp} or {bump_stamp}).
type Encoded struct {
	Subscribed   map[string]map[string]Subscribed   `json:"subscribed,omitempty"`
	Unsubscribed map[string]map[string]Unsubscribed `json:"unsubscribed,omitempty"`
}

// Subscribed is a thread subscription's state.
type Subscribed struct {
	Automatic bool  `json:"automatic"`
	BumpStamp int64 `json:"bump_stamp"`
}

// Unsubscribed is a removed subscription.
type Unsubscribed struct {
	BumpStamp int64 `json:"bump_stamp"`
}

// Encode puts changes in MSC4308's shape (the bump_stamp is the change's
// stream position).
func Encode(cs []Change) Encoded {
	var e Encoded
	for _, c := range cs {
		if c.Subscribed {
			if e.Subscribed == nil {
				e.Subscribed = map[string]map[string]Subscribed{}
			}
			if e.Subscribed[c.RoomID] == nil {
				e.Subscribed[c.RoomID] = map[string]Subscribed{}
			}
			e.Subscribed[c.RoomID][c.ThreadID] = Subscribed{Automatic: c.Automatic, BumpStamp: c.Pos}
		} else {
			if e.Unsubscribed == nil {
				e.Unsubscribed = map[string]map[string]Unsubscribed{}
			}
			if e.Unsubscribed[c.RoomID] == nil {
				e.Unsubscribed[c.RoomID] = map[string]Unsubscribed{}
			}
			e.Unsubscribed[c.RoomID][c.ThreadID] = Unsubscribed{BumpStamp: c.Pos}
		}
	}
	return e
}

// Token is a /thread_subscriptions pagination token: the changes in
// (Lower, Upper] are still to be read. It carries the lower bound so that a
// client passing sliding sync's pos as "to" (MSC4308) needs nothing else.
type Token struct {
	Upper, Lower int64
}

func (t Token) String() string {
	return "ts" + strconv.FormatInt(t.Upper, 10) + "_" + strconv.FormatInt(t.Lower, 10)
}

// ParseToken reads a token this server gave.
func ParseToken(s string) (Token, bool) {
	rest, ok := strings.CutPrefix(s, "ts")
	if !ok {
		return Token{}, false
	}
	up, low, ok := strings.Cut(rest, "_")
	if !ok {
		return Token{}, false
	}
	u, err1 := strconv.ParseInt(up, 10, 64)
	l, err2 := strconv.ParseInt(low, 10, 64)
	if err1 != nil || err2 != nil || u < 0 || l < 0 || l > u {
		return Token{}, false
	}
	return Token{Upper: u, Lower: l}, true
}
