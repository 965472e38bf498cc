package store

import "context"

// SyncQueries are the reads /sync needs beyond plain event lookups.
type SyncQueries interface {
	// ChangedRooms lists the rooms with events in (after, upto].
	ChangedRooms(ctx context.Context, after, upto int64) ([]string, error)
	// StateBetween returns, per (type, state_key), the newest state event of
	// the room with a position in (after, before).
	StateBetween(ctx context.Context, roomID string, after, before int64) ([]StoredEvent, error)
	// UnreadCounts counts events after the user's m.read receipt (or their
	// join) sent by others that notify: messages, encrypted messages,
	// stickers. Highlights are those whose content mentions the user.
	UnreadCounts(ctx context.Context, roomID, userID string, upto int64) (notifications, highlights int, err error)
}
