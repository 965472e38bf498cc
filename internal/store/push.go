package store

import (
	"context"
	"encoding/json"
	"errors"
)

// Pusher is one push gateway registration (spec: "Push Notifications",
// POST /pushers/set). It belongs to the device that created it and goes
// with it (logout, device deletion, password change with logout_devices).
type Pusher struct {
	UserID            string
	DeviceID          string
	AppID             string
	PushKey           string
	Kind              string
	AppDisplayName    string
	DeviceDisplayName string
	ProfileTag        string
	Lang              string
	Data              json.RawMessage
	CreatedTS         int64
	// Delivery state (PushQueue): the position of the last notification
	// delivered or given up, and the current run of failures.
	LastPos      int64
	FailingSince int64
	RetryAt      int64
}

// ErrTooManyPushers is returned by SetPusher when the user has reached the limit.
var ErrTooManyPushers = errors.New("store: too many pushers")

// Pushers keeps pushers.
type Pushers interface {
	// SetPusher creates or replaces the pusher (UserID, AppID, PushKey). With
	// replaceOthers, pushers of other users with the same app ID and pushkey
	// are removed in the same transaction. A new pusher beyond max for the
	// user fails with ErrTooManyPushers.
	SetPusher(ctx context.Context, p *Pusher, replaceOthers bool, max int) error
	// DeletePusher removes one pusher of the user (no error if absent).
	DeletePusher(ctx context.Context, userID, appID, pushKey string) error
	// PushersOf lists the user's pushers, oldest first.
	PushersOf(ctx context.Context, userID string) ([]Pusher, error)
}

// PushAction is what one local user's push rules decided for one event that
// notifies them (spec "Push Rules": the actions of the first matching rule,
// when they include "notify"). Rows are written with the event, in its
// transaction and at its stream position (NewEvent.Push), so a crash never
// loses a count.
type PushAction struct {
	UserID string
	// ThreadID is "main", or the root of the thread the event is in
	// (threaded read receipts and unread_thread_notifications).
	ThreadID  string
	Highlight bool
	// Actions is the rule's actions as a JSON array (the tweaks a push
	// gateway and GET /notifications report).
	Actions json.RawMessage
}

// Notification is a stored PushAction with its event.
type Notification struct {
	PushAction
	Pos     int64
	RoomID  string
	EventID string
	TS      int64
	// Read: the user's read receipts in the room cover the event.
	Read bool
}

// ThreadCounts are one thread's unread counts.
type ThreadCounts struct {
	Notifications int
	Highlights    int
}

// Notifications reads the stored PushActions.
type Notifications interface {
	// NotificationsOf lists the user's notifications with a position below
	// before (0: no bound), newest first, at most limit; only highlights
	// when onlyHighlight.
	NotificationsOf(ctx context.Context, userID string, before int64, limit int, onlyHighlight bool) ([]Notification, error)
	// PruneNotifications deletes at most limit notifications of events
	// older than readBefore (origin_server_ts, ms) that every user they
	// apply to has read (their read receipts or a later membership cover
	// them), and of events older than allBefore whether read or not; it
	// returns how many rows went. Counts of unread notifications younger
	// than allBefore never change.
	PruneNotifications(ctx context.Context, readBefore, allBefore int64, limit int) (int64, error)
}

// PushQueue is the pushers' delivery state (internal/pushsender): each
// pusher delivers its user's notifications after its cursor, and a process
// claims a pusher for a while before sending, so that processes sharing a
// database never send the same notification twice.
type PushQueue interface {
	// MarkRead sets Read on each notification: whether the user's read
	// receipts in its room cover it (e-mail pushers mail only what is
	// still unread).
	MarkRead(ctx context.Context, userID string, ns []Notification) error
	// DuePushers lists http and email pushers with notifications after their cursor,
	// whose retry time has come (at now, ms) and that no owner holds, at
	// most limit.
	DuePushers(ctx context.Context, now int64, limit int) ([]Pusher, error)
	// ClaimPusher takes the pusher for owner until until, unless another
	// owner holds it at now; it reports whether owner holds it, and fills
	// p's delivery state as it is.
	ClaimPusher(ctx context.Context, p *Pusher, owner string, now, until int64) (bool, error)
	// PushPending lists the user's notifications after position after,
	// oldest first, at most limit.
	PushPending(ctx context.Context, userID string, after int64, limit int) ([]Notification, error)
	// UpdatePusher records the owner's progress: the cursor (never moved
	// back), the failure times and the claim's end (0 releases it). false
	// when owner no longer holds the pusher (it was deleted or taken).
	UpdatePusher(ctx context.Context, p *Pusher, owner string, lastPos, failingSince, retryAt, claimedUntil int64) (bool, error)
	// ReleaseClaims ends every claim: for a process that knows it is the
	// database's only user (SQLite), at start, so that the claims of a
	// process that died do not delay its pushes.
	ReleaseClaims(ctx context.Context) error
}
