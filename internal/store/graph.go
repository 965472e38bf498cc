package store

import "context"

// Where an event stands in its room's graph (events.kind).
const (
	// KindTimeline: accepted, with its state; clients see it.
	KindTimeline = 0
	// KindOutlier: known without its state (auth chains, the state of a
	// room we join, invites to rooms we are not in).
	KindOutlier = 1
	// KindSoftFailed: allowed by the state before it but not by the room's
	// current state: kept with its state (later events may cite it), out of
	// clients' timelines and out of the forward extremities.
	KindSoftFailed = 2
	// KindRejected: failed the authorisation rules. Kept so it is not
	// fetched again; never used for auth, state or timelines.
	KindRejected = 3
	// KindBackfilled: history older than the room's timeline here, fetched
	// from another server (/backfill) and checked against its auth events:
	// clients' /messages and event reads see it, /sync never does. It has
	// no state group, and takes negative positions running down as history
	// goes back, so /messages pages from the timeline into it in order.
	KindBackfilled = 4
	// KindPurged: a timeline, backfilled or soft-failed non-state event
	// whose room's retention period ended (internal/retention). Its row
	// stays, so the graph stays whole (newer events' prev_events, depth,
	// state groups, receipts), but its JSON is the redacted event and
	// everything derived from its content (search, relations,
	// notifications) is gone. Clients never see it; the Server-Server API
	// serves it to nobody.
	KindPurged = 5
)

// StateEntry is one piece of a room state: (Type, StateKey) → EventID. In a
// change, EventID "" removes the key. Membership is the membership of an
// m.room.member event (for the memberships table).
type StateEntry struct {
	Type, StateKey, EventID string
	Membership              string
}

// PDU is any stored event with its place in the room graph: what the room
// writer and the Server-Server API read (clients read StoredEvent, which
// only timeline events produce).
type PDU struct {
	EventID string
	RoomID  string
	JSON    []byte
	Kind    int
	// RejectedReason says why a KindRejected event was rejected.
	RejectedReason string
	// StateGroup is the state after the event (timeline and soft-failed
	// events); 0 for outliers and rejected events, and for events from
	// before migration 0013 except each room's forward extremities.
	StateGroup int64
	Pos        int64
	Depth      int64
	// ReplacesState is the state event this one replaced in the state
	// before it (timeline and soft-failed state events).
	ReplacesState string
}

// GraphWrite is one event the room writer persists with what it decided
// about its place in the graph: events received from other servers, whose
// prev_events need not be the room's forward extremities.
type GraphWrite struct {
	Event NewEvent
	// Kind of the event; for KindRejected, RejectedReason says why.
	Kind           int
	RejectedReason string

	// Timeline and soft-failed events: the state before the event is the
	// group StateBefore, or, when NewStateBefore is set, a new group made of
	// StateBeforeChanges on top of StateBefore (0: the whole state) — the
	// resolution of several prev events' states.
	StateBefore        int64
	NewStateBefore     bool
	StateBeforeChanges []StateEntry
	// StateBeforeOf, in a PersistGraphEvents call, is the number (1-based)
	// of an earlier write of the same call whose state after is the state
	// before this event, instead of StateBefore: the writer decides a run of
	// events in memory, before the store has numbered their groups.
	StateBeforeOf int

	// Timeline events only: the room's forward extremities after the write,
	// and its current state. With CurrentResolved false the event extends
	// the current state (its state before is the room's current state): the
	// state after it becomes current. Otherwise CurrentChanges take the old
	// current state to the new one (the resolution of the extremities'
	// states); they are applied to the current state and memberships and
	// kept as a new group.
	Extremities     []string
	CurrentResolved bool
	CurrentChanges  []StateEntry
	// GapBefore (timeline events): history before the event is missing
	// here — it was taken with the state at prev events this server could
	// not fetch. Recorded as a timeline gap at its position.
	GapBefore bool
}

// TimelineGaps reads the holes GraphWrite.GapBefore recorded.
type TimelineGaps interface {
	// LatestTimelineGap returns the position of the room's last gap in
	// (after, upto], 0 if none.
	LatestTimelineGap(ctx context.Context, roomID string, after, upto int64) (int64, error)
}

// Graph keeps the room graph: every event whatever its kind, the state
// groups, and writes that do not extend a single line.
type Graph interface {
	// PersistGraphEvent writes one event in one transaction, under the
	// room's writer lock. A timeline event takes the next stream position;
	// every other kind a negative one. An event ID already stored is
	// ErrConflict and writes nothing. Like PersistEvents, a call is carried
	// to its outcome even if ctx ends.
	PersistGraphEvent(ctx context.Context, w *GraphWrite) (pos int64, stateGroup int64, err error)
	// PersistGraphEvents writes events of one room in one transaction, in
	// order, as PersistGraphEvent would one after the other, and returns
	// each one's position and state group. It is all or nothing: if one
	// write fails (ErrConflict for an event already stored) none is kept.
	PersistGraphEvents(ctx context.Context, ws []*GraphWrite) (pos, stateGroups []int64, err error)
	// PersistOutliers stores events known without their state
	// (KindOutlier); events already stored are left as they are.
	PersistOutliers(ctx context.Context, events []NewEvent) error
	// GetPDUs returns the stored events among ids, of every kind, in no
	// particular order.
	GetPDUs(ctx context.Context, ids []string) ([]PDU, error)
	// StateGroup returns the whole state of a group.
	StateGroup(ctx context.Context, group int64) ([]StateEntry, error)
	// RoomStateGroup returns the group of the room's current state.
	RoomStateGroup(ctx context.Context, roomID string) (int64, error)
	// PersistBackfill stores backfilled events, newest first, in one
	// transaction: each takes the next negative position (so the oldest
	// ends lowest), as KindBackfilled, or KindRejected when Rejected is set.
	// An event stored as an outlier becomes backfilled (at a new position);
	// an event stored as any other kind is left as it is. A backfilled
	// redaction marks its target as other events' do. Returns how many
	// events became backfilled.
	PersistBackfill(ctx context.Context, roomID string, events []BackfillEvent) (int, error)
	// EarliestEvents returns the room's n lowest-positioned timeline and
	// backfilled events (oldest first): where backfilling continues from.
	EarliestEvents(ctx context.Context, roomID string, n int) ([]PDU, error)
}

// BackfillEvent is one event PersistBackfill stores.
type BackfillEvent struct {
	Event          NewEvent
	Rejected       bool
	RejectedReason string
}

// RemoteMembership is a local user's membership in a room this server is
// not in: the event (an outlier), and what the other server told of the
// room (stripped state, for an invite or a knock).
type RemoteMembership struct {
	RoomID, UserID, RoomVersion, Membership string
	Event                                   NewEvent
	// StrippedState is a JSON array of stripped state events.
	StrippedState []byte
	Pos           int64
}

// RemoteMemberships keeps memberships in rooms this server is not in.
type RemoteMemberships interface {
	// PersistRemoteMembership stores the event as an outlier (if new) and
	// the membership at a new stream position, in one transaction.
	PersistRemoteMembership(ctx context.Context, m *RemoteMembership) (pos int64, err error)
	// GetRemoteMembership returns the last one stored for the user in the
	// room (ErrNotFound if none); Event holds only its EventID.
	GetRemoteMembership(ctx context.Context, roomID, userID string) (*RemoteMembership, error)
	// RemoteRoomVersion returns the version of a room this server knows
	// only through remote memberships (ErrNotFound if none).
	RemoteRoomVersion(ctx context.Context, roomID string) (string, error)
}
