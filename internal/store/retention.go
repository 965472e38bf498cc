package store

import "context"

// RetentionRoom is a room with the content of its current m.room.retention
// state event (nil without one).
type RetentionRoom struct {
	RoomID string
	// Policy is the JSON of the m.room.retention event (the whole PDU), nil
	// if the room has none.
	Policy []byte
}

// ExpiredEvent is an event a purge may take: its JSON and where it stands.
type ExpiredEvent struct {
	EventID string
	Pos     int64
	// TS is its origin_server_ts (milliseconds).
	TS   int64
	JSON []byte
}

// PurgedEvent is one event to purge and the JSON it keeps (the redacted
// event: what the graph needs, no content).
type PurgedEvent struct {
	EventID string
	JSON    []byte
}

// Retention is what message retention (internal/retention) needs: which
// rooms have which policy, which events have expired, and the purge.
type Retention interface {
	// RetentionRooms lists the rooms whose IDs sort after `after`, at most
	// limit, in ID order, each with its m.room.retention event.
	RetentionRooms(ctx context.Context, after string, limit int) ([]RetentionRoom, error)
	// ExpiredEvents returns at most limit of the room's timeline,
	// backfilled and soft-failed events that are not state events, not
	// forward extremities,
	// sent before `before` (origin_server_ts, milliseconds) and after the
	// cursor (afterTS, afterPos) in (origin_server_ts, pos) order, in that
	// order. Start with afterTS = math.MinInt64.
	ExpiredEvents(ctx context.Context, roomID string, before, afterTS, afterPos int64, limit int) ([]ExpiredEvent, error)
	// PurgeEvents purges the given events of the room, in one transaction:
	// each keeps its row with the JSON given and becomes KindPurged; its
	// search entry, relation, transaction ID and notifications are removed.
	// Events that are not (or no longer) timeline, backfilled or soft-failed
	// non-state events, or that became forward extremities, are left as they
	// are. Returns how many were purged.
	PurgeEvents(ctx context.Context, roomID string, events []PurgedEvent) (int, error)
}
