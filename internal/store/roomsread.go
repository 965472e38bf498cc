package store

import "context"

// RoomsRead serves the read-mostly room endpoints: relations and threads,
// bundled aggregations, the public room directory, alias moves on room
// upgrades and timestamp lookups.
type RoomsRead interface {
	// Relations pages the events relating to one event (m.relates_to), newest
	// first when backwards. Redacted relations are left out: a redaction
	// removes the relation (Client-Server API, "Redactions" of relations).
	Relations(ctx context.Context, q RelationsQuery) ([]StoredEvent, error)
	// BundledRelations gathers, in one query, what the bundled aggregations
	// of the given events need.
	BundledRelations(ctx context.Context, eventIDs []string, userID string) (*BundledRelations, error)
	// Threads lists a room's thread roots by latest activity, newest first.
	Threads(ctx context.Context, q ThreadsQuery) ([]ThreadActivity, error)
	// PublicRoomIDs lists the rooms published in the room directory.
	PublicRoomIDs(ctx context.Context) ([]string, error)
	// MoveAliases points every alias of one room at another (room upgrades).
	MoveAliases(ctx context.Context, fromRoomID, toRoomID string) error
	// EventNearTimestamp returns up to limit events of a room at or before
	// (backwards) or at or after (forwards) ts, nearest first.
	EventsNearTimestamp(ctx context.Context, roomID string, ts int64, backwards bool, limit int) ([]StoredEvent, error)
}

// RelationsQuery selects a page of the events relating to EventID.
type RelationsQuery struct {
	RoomID    string
	EventID   string
	RelType   string // "": any
	EventType string // "": any
	After     int64  // exclusive lower bound (0: none)
	Before    int64  // exclusive upper bound (0: none)
	Backwards bool
	Limit     int
}

// ThreadSummary aggregates one thread for its root.
type ThreadSummary struct {
	Count         int
	LatestEventID string
	// Participated: the user asked about sent a reply in the thread.
	Participated bool
}

// BundledRelations holds the aggregations for a set of parent events.
type BundledRelations struct {
	Threads map[string]ThreadSummary // by root event ID
	// Edits maps an event to its latest valid replacement (same sender, same
	// type, neither a state event; newest origin_server_ts, then largest ID).
	Edits map[string]string
	// References lists the events referencing each event, oldest first.
	References map[string][]string
}

// ThreadsQuery selects a page of a room's threads.
type ThreadsQuery struct {
	RoomID string
	// ParticipatedBy keeps only threads the user started or replied in ("": all).
	ParticipatedBy string
	Before         int64 // latest activity strictly before this position (0: none)
	Limit          int
}

// ThreadActivity is a thread root and the position of its latest reply.
type ThreadActivity struct {
	RootID    string
	LatestPos int64
}
