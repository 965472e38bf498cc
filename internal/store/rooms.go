package store

import "context"

// Room is a room this server takes part in.
type Room struct {
	RoomID    string
	Version   string
	Creator   string
	CreatedTS int64
	// Published in the public room directory.
	Public bool
}

// StoredEvent is an event as persisted: the federation-format PDU JSON and
// what the server learned about it since.
type StoredEvent struct {
	Pos     int64 // global stream position
	EventID string
	RoomID  string
	JSON    []byte // canonical federation-format PDU, without event_id
	// RedactedBy is the ID of the redaction applied to this event, if any.
	RedactedBy string
	// ReplacesState is the event this state event replaced, for prev_content.
	ReplacesState string
	// Sender's device and transaction ID, for unsigned.transaction_id.
	SenderDevice string
	TxnID        string
	// Membership is the membership after this event, for m.room.member events.
	Membership string
	// Type and StateKey are duplicated from JSON for filtering in SQL.
	Type     string
	StateKey *string
	Sender   string
}

// NewEvent is one event to persist, with what the room service decided about it.
type NewEvent struct {
	EventID        string
	RoomID         string
	Type           string
	StateKey       *string
	Sender         string
	Depth          int64
	OriginServerTS int64
	JSON           []byte
	// ReplacesState is the current state event for (Type, StateKey) that this
	// event replaces ("" if none or not a state event).
	ReplacesState string
	// Membership for m.room.member events ("" otherwise).
	Membership string
	// Redacts is the target of an m.room.redaction that the server applies.
	Redacts string
	// RelatesTo / RelType index m.relates_to for /relations and /threads.
	RelatesTo string
	RelType   string
	// Transaction idempotency: the sending device and its txn ID ("" if none).
	SenderDevice string
	TxnID        string
	// ContainsURL: content.url is a string (filters' contains_url).
	ContainsURL bool
	// PrevEvents are the event's prev_events. When set on the first event
	// of a PersistEvents call, the store checks under its per-room lock that
	// they are still the room's forward extremities (ErrRoomChanged if not).
	PrevEvents []string
	// Push are the notifications the event causes (local recipients whose
	// push rules notify), written in the event's transaction at its
	// position. Only timeline events carry them.
	Push []PushAction
	// PushCommon, when set, is stored instead of a row per recipient: the
	// outcome of every user joined to the room before the event (by stream
	// order) other than the sender, except the users in PushOwn, whose
	// rows are stored as given (a row whose Actions is nil says the user
	// is not notified). Push still lists every notified recipient. The
	// room writer sets it when one outcome is common (a message to a room
	// whose members keep the default rules), so that a message costs one
	// row instead of one per member.
	PushCommon *PushAction
	PushOwn    []PushAction
	// Fed are the other servers this event (an event this server made) is
	// queued for in the outbound federation queue (FedQueue, as a PDU: event
	// ID and JSON), in the transaction that writes it: an event is never
	// committed without its queue entries, whatever happens after the
	// commit (a death before the sender is woken only delays it).
	Fed []string
}

// MaxStateGroupChain is the longest chain of state group deltas: the state
// after the next state event is stored whole (a snapshot), so reading any
// state takes a bounded number of groups.
const MaxStateGroupChain = 100

// RoomSnapshot is what the room service loads once per room and keeps in
// memory: the version, the current state and the forward extremities.
type RoomSnapshot struct {
	Room        Room
	State       []StoredEvent // current state events
	Extremities []string      // forward extremities (event IDs)
	MaxDepth    int64
}

// Rooms keeps rooms, their events, state and memberships.
type Rooms interface {
	// CreateRoom inserts the room and its first events in one transaction.
	CreateRoom(ctx context.Context, r *Room, events []NewEvent) ([]int64, error)
	GetRoom(ctx context.Context, roomID string) (*Room, error)
	LoadRoomSnapshot(ctx context.Context, roomID string) (*RoomSnapshot, error)
	// PersistEvents appends events to a room in one transaction: rows, stream
	// positions, current state, memberships, redaction marks, relation index,
	// txn mapping and forward extremities (the new events replace the old
	// extremities they cite). Returns the positions given, in order.
	//
	// A call is carried to its outcome even if ctx ends: the caller applies
	// a committed write to its caches and wakes readers by the answer, so a
	// commit reported as failed (the context cancelled while the commit was
	// on its way) would leave them behind the store.
	PersistEvents(ctx context.Context, roomID string, events []NewEvent) ([]int64, error)
	SetRoomPublic(ctx context.Context, roomID string, public bool) error
	ForgetRoom(ctx context.Context, userID, roomID string) error
	IsForgotten(ctx context.Context, userID, roomID string) (bool, error)

	// Aliases.
	CreateAlias(ctx context.Context, alias, roomID, creator string) error
	GetAlias(ctx context.Context, alias string) (roomID, creator string, err error)
	DeleteAlias(ctx context.Context, alias string) error
	AliasesForRoom(ctx context.Context, roomID string) ([]string, error)
}

// Events looks events up.
type Events interface {
	GetEvent(ctx context.Context, eventID string) (*StoredEvent, error)
	// GetEvents returns the events found, in no particular order.
	GetEvents(ctx context.Context, eventIDs []string) ([]StoredEvent, error)
	EventByTxn(ctx context.Context, userID, deviceID, roomID, txnID string) (string, error)
	// StateAt returns the room state after the room's newest event at or
	// before pos (its state group).
	StateAt(ctx context.Context, roomID string, pos int64) ([]StoredEvent, error)
	// RoomEvents pages a room's timeline: positions strictly after `after`
	// and strictly before `before` (0: unbounded), newest first when
	// backwards, at most limit events.
	RoomEvents(ctx context.Context, q RoomEventsQuery) ([]StoredEvent, error)
	// Memberships of a user: room IDs with their membership and position.
	UserMemberships(ctx context.Context, userID string) ([]Membership, error)
	// RoomMembers returns the current member events of a room.
	RoomMembers(ctx context.Context, roomID string) ([]Membership, error)
	// JoinedCoMembers returns, in no particular order and each once, the
	// users joined to a room the user is joined to (the user among them):
	// one query where loading every room's state would take long.
	JoinedCoMembers(ctx context.Context, userID string) ([]string, error)
}

// Membership is a user's current membership in a room.
type Membership struct {
	RoomID     string
	UserID     string
	Membership string
	EventID    string
	Pos        int64
	// Forgotten: the user forgot the room after leaving it.
	Forgotten bool
}

// RoomEventsQuery selects a page of a room's timeline.
type RoomEventsQuery struct {
	RoomID    string
	After     int64 // exclusive lower bound (0: none)
	Before    int64 // exclusive upper bound (0: none)
	Backwards bool
	Limit     int
	// Optional filters (empty: all).
	Types       []string
	NotTypes    []string
	Senders     []string
	NotSenders  []string
	ContainsURL *bool
	// WithBackfilled includes backfilled events (KindBackfilled, at
	// negative positions: /messages). After and Before are then always
	// applied: math.MinInt64 and math.MaxInt64 stand for no bound.
	WithBackfilled bool
	// Topological (with WithBackfilled) orders by (depth, position), the
	// topological order /messages pages in, and bounds the rows by
	// AfterTopo and BeforeTopo too (exclusive; nil: none).
	Topological           bool
	AfterTopo, BeforeTopo *TopoPoint
}

// TopoPoint is a place in a room's topological order: (depth, position).
type TopoPoint struct{ Depth, Pos int64 }

// StateHistory is implemented by stores that can list every version of one
// piece of state in a room (for history visibility).
type StateHistory interface {
	// StateEventsOf returns every event of (type, state_key) in the room, oldest first.
	StateEventsOf(ctx context.Context, roomID, typ, stateKey string) ([]StoredEvent, error)
}
