package store

import "context"

// SyncQueries are the reads /sync needs beyond plain event lookups.
type SyncQueries interface {
	// ChangedRooms lists the rooms with events in (after, upto].
	ChangedRooms(ctx context.Context, after, upto int64) ([]string, error)
	// StateBetween returns, per (type, state_key), the newest state event of
	// the room with a position in (after, before).
	StateBetween(ctx context.Context, roomID string, after, before int64) ([]StoredEvent, error)
	// UnreadCounts counts events after the user's read point — the newest
	// of their m.read / m.read.private receipts and their own latest
	// membership — and after since, up to upto, sent by others that notify:
	// messages, encrypted messages, stickers. Highlights are those whose
	// content mentions the user. The read point is returned so a caller
	// can count incrementally: counts over (since, upto] add to counts
	// over (read point, since] as long as the read point has not moved.
	UnreadCounts(ctx context.Context, roomID, userID string, since, upto int64) (Unread, error)
}

// Unread is the result of UnreadCounts.
type Unread struct {
	ReadPos       int64
	Notifications int
	Highlights    int
}
