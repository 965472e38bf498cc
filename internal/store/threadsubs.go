package store

import "context"

// ThreadSubscription is a user's subscription to a thread (MSC4306), or
// the record of its removal (Subscribed false), with the stream position
// of its latest change (its bump_stamp).
type ThreadSubscription struct {
	RoomID     string
	ThreadID   string // the thread's root event
	Subscribed bool
	Automatic  bool
	// UnsubscribedPos is the stream position of the latest unsubscription
	// (0: never): an automatic subscription caused by an event from before
	// it is refused.
	UnsubscribedPos int64
	Pos             int64
}

// ThreadSubscriptions keeps users' thread subscriptions (internal/threadsubs).
type ThreadSubscriptions interface {
	// ThreadSubscription returns the row of a user's thread, ErrNotFound
	// if there is none.
	ThreadSubscription(ctx context.Context, userID, roomID, threadID string) (ThreadSubscription, error)
	// SwapThreadSubscription writes the row (subscribed, automatic) at the
	// next stream position, only if the row's position is still expectPos
	// (0: no row), in one transaction; an unsubscription also records its
	// position as UnsubscribedPos. swapped is false, and nothing written,
	// when the row had changed.
	SwapThreadSubscription(ctx context.Context, userID, roomID, threadID string, subscribed, automatic bool, expectPos int64) (pos int64, swapped bool, err error)
	// ThreadSubscriptionChanges lists the user's rows changed in
	// (after, upto], the latest limit of them, oldest first.
	ThreadSubscriptionChanges(ctx context.Context, userID string, after, upto int64, limit int) ([]ThreadSubscription, error)
}
