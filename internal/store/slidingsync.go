package store

import "context"

// SlidingSync keeps the connections of simplified sliding sync (MSC4186):
// per (user, device, conn_id), the latest position handed out and the one
// it was built from (a client that lost the latest response retries with
// that one), each with the connection's own state (an opaque blob the
// sliding sync engine writes), and per room how far the client has been
// sent it. Every process sharing the database sees the same connections.
type SlidingSync interface {
	// SlidingConn returns the connection of (user, device, conn_id), or
	// ErrNotFound.
	SlidingConn(ctx context.Context, userID, deviceID, connID string) (*SlidingConn, error)
	// SlidingRooms returns the connection's per-room rows.
	SlidingRooms(ctx context.Context, conn int64) ([]SlidingRoom, error)
	// NewSlidingConn replaces any connection of (c.UserID, c.DeviceID,
	// c.ConnID) with c (its rooms go with it) and returns c's new ID. In the
	// same transaction it deletes the device's least recently updated
	// connections beyond maxPerDevice, and everyone's connections last
	// updated before expireBefore (Unix ms). ErrConflict: a concurrent call
	// created the same connection.
	NewSlidingConn(ctx context.Context, c *SlidingConn, maxPerDevice int, expireBefore int64) (int64, error)
	// AdvanceSlidingConn records a new latest position, atomically: u.Seq
	// built from u.PrevSeq, with the connection's state at each, provided
	// the connection's latest position is still latest (ErrConflict
	// otherwise: another request advanced it, or it was replaced). When
	// u.PrevSeq is not latest (a retry from the previous position), the
	// rooms the abandoned latest position changed are first put back as
	// they were before it. Then each of rooms is written as given.
	AdvanceSlidingConn(ctx context.Context, conn, latest int64, u SlidingConnUpdate, rooms []SlidingRoom) error
	// TouchSlidingConn sets the connection's last use (Unix ms), which
	// keeps it from expiring.
	TouchSlidingConn(ctx context.Context, conn, ts int64) error
	// LatestEventPositions returns, for each of roomIDs that has one, the
	// stream position of its newest event of one of types at or below upto
	// (the rooms' bump stamps, all at once).
	LatestEventPositions(ctx context.Context, roomIDs, types []string, upto int64) (map[string]int64, error)
	// SlidingStamps returns the user's saved bump stamps (the engine's
	// encoding) and the stream position they were computed at; ErrNotFound
	// if none were saved.
	SlidingStamps(ctx context.Context, userID string) (pos int64, stamps []byte, err error)
	// PutSlidingStamps saves them, unless stamps of a later position are
	// saved already.
	PutSlidingStamps(ctx context.Context, userID string, pos int64, stamps []byte) error
}

// SlidingConn is one sliding sync connection.
type SlidingConn struct {
	ID                       int64
	UserID, DeviceID, ConnID string
	// Seq is the latest position handed out; PrevSeq the one it was built
	// from (0: none). State and PrevState are the connection's state at each.
	Seq, PrevSeq     int64
	State, PrevState []byte
	UpdatedTS        int64
}

// SlidingConnUpdate is what AdvanceSlidingConn writes to the connection row.
type SlidingConnUpdate struct {
	Seq, PrevSeq     int64
	State, PrevState []byte
	UpdatedTS        int64
}

// SlidingRoom is how far a connection's client has been sent one room. Seq
// is the position that last changed the row; Prev* are the values before
// that position (what a retry from the previous position starts from).
type SlidingRoom struct {
	RoomID     string
	Seq        int64
	Sent       int64  // stream position the room was sent up to (0: never)
	Config     int64  // the engine's fingerprint of what the room was sent with
	Lazy       []byte // the engine's record of the lazy-loaded members sent
	PrevSent   int64
	PrevConfig int64
	PrevLazy   []byte
}
