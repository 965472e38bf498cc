package postgres

import (
	"conclave/internal/store/sqlstore"
	"context"
	"errors"
	"slices"

	"github.com/jackc/pgx/v5"

	"conclave/internal/store"
)

func (db *DB) CreateRoom(ctx context.Context, r *store.Room, events []store.NewEvent) ([]int64, error) {
	var p pipeline
	p.exec(conflictErr, `INSERT INTO rooms (room_id, version, creator, created_ts, public) VALUES ($1, $2, $3, $4, $5)`,
		r.RoomID, r.Version, r.Creator, r.CreatedTS, r.Public)
	positions := queueEvents(ctx, &p, r.RoomID, events)
	if err := db.run(ctx, &p); err != nil {
		return nil, err
	}
	return positions(), nil
}

func (db *DB) GetRoom(ctx context.Context, roomID string) (*store.Room, error) {
	r := store.Room{RoomID: roomID}
	err := db.pool.QueryRow(ctx, `SELECT version, creator, created_ts, public FROM rooms WHERE room_id = $1`, roomID).
		Scan(&r.Version, &r.Creator, &r.CreatedTS, &r.Public)
	if err != nil {
		return nil, notFound(err)
	}
	return &r, nil
}

func (db *DB) LoadRoomSnapshot(ctx context.Context, roomID string) (*store.RoomSnapshot, error) {
	var snap *store.RoomSnapshot
	// One repeatable-read transaction: state, extremities and depth agree
	// even while another process appends to the room.
	err := pgx.BeginTxFunc(ctx, db.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		r := store.Room{RoomID: roomID}
		err := tx.QueryRow(ctx, `SELECT version, creator, created_ts, public FROM rooms WHERE room_id = $1`, roomID).
			Scan(&r.Version, &r.Creator, &r.CreatedTS, &r.Public)
		if err != nil {
			return notFound(err)
		}
		snap = &store.RoomSnapshot{Room: r}
		if snap.State, err = queryEvents(ctx, tx, `SELECT `+eventColumns+` FROM room_state s JOIN events e ON e.event_id = s.event_id WHERE s.room_id = $1`, roomID); err != nil {
			return err
		}
		if snap.Extremities, err = queryStrings(ctx, tx, `SELECT event_id FROM forward_extremities WHERE room_id = $1`, roomID); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT coalesce(max(depth), 0) FROM events WHERE room_id = $1`, roomID).Scan(&snap.MaxDepth)
	})
	if err != nil {
		return nil, err
	}
	return snap, nil
}

func (db *DB) PersistEvents(ctx context.Context, roomID string, events []store.NewEvent) ([]int64, error) {
	if len(events) == 0 {
		return nil, nil
	}
	var p pipeline
	positions := queueEvents(ctx, &p, roomID, events)
	if err := db.run(ctx, &p); err != nil {
		return nil, err
	}
	return positions(), nil
}

// queueEvents queues the writes of PersistEvents on p; positions returns the
// events' stream positions once p has run.
//
// The whole write is one pipeline (one round trip, one implicit
// transaction): the room's advisory lock (one writer per room across
// processes), the check that this writer built on the room's current head,
// then the stream position allocation and every row. The stream row lock is
// thus taken after the room lock and the check, and held only while the
// server runs the inserts and commits.
func queueEvents(ctx context.Context, p *pipeline, roomID string, events []store.NewEvent) func() []int64 {
	if len(events) == 0 {
		return func() []int64 { return nil }
	}
	p.exec(nil, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, roomLockClass, roomID)
	if prev := events[0].PrevEvents; prev != nil {
		// Every event prev cites must still be a forward extremity: if not,
		// the division by zero aborts the transaction (constant folding
		// cannot trigger it early: the condition reads tables) and is
		// reported as store.ErrRoomChanged.
		p.exec(roomChangedErr, `SELECT 1 / CASE WHEN
				(SELECT count(DISTINCT event_id) FROM forward_extremities WHERE room_id = $1 AND event_id = ANY($2::text[])) =
				(SELECT count(DISTINCT x) FROM unnest($2::text[]) AS x)
			THEN 1 ELSE 0 END`, roomID, prev)
	}
	var first int64
	n := len(events)
	p.allocPos(ctx, n, &first)
	for i := range events {
		e := &events[i]
		back := n - 1 - i // this event's position is lastPosSQL - back
		if e.StateKey != nil {
			// The state after a state event is a new group: a delta on the
			// room's current group, or a snapshot (see newStateGroupSQL).
			p.exec(nil, newStateGroupSQL, roomID)
			p.exec(nil, `UPDATE rooms SET state_group = currval('state_groups_id_seq') WHERE room_id = $1`, roomID)
		}
		p.exec(conflictErr, `INSERT INTO events (pos, event_id, room_id, type, state_key, sender, depth, origin_server_ts, json, replaces_state, membership, relates_to, rel_type, sender_device, txn_id, contains_url, state_group, current_group)
			VALUES (`+lastPosSQL+` - $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, (SELECT state_group FROM rooms WHERE room_id = $3), (SELECT state_group FROM rooms WHERE room_id = $3))`,
			back, e.EventID, roomID, e.Type, e.StateKey, e.Sender, e.Depth, e.OriginServerTS, e.JSON, e.ReplacesState, e.Membership, e.RelatesTo, e.RelType, e.SenderDevice, e.TxnID, e.ContainsURL)
		own := e.Push
		if c := e.PushCommon; c != nil {
			// One row for the common outcome (store.NewEvent.PushCommon).
			own = e.PushOwn
			p.exec(nil, `INSERT INTO event_notifs (room_id, pos, event_id, sender, thread_id, highlight, actions, ts)
				VALUES ($2, `+lastPosSQL+` - $1, $3, $4, $5, $6, $7, $8)`,
				back, roomID, e.EventID, e.Sender, c.ThreadID, int32(sqlstore.BoolInt(c.Highlight)), string(c.Actions), e.OriginServerTS)
		}
		if len(own) > 0 {
			users, threads, hl, acts, notify := sqlstore.PushActionArrays(own)
			p.exec(nil, `INSERT INTO event_push_actions (user_id, pos, room_id, event_id, thread_id, highlight, actions, ts, notify)
				SELECT u, `+lastPosSQL+` - $1, $2, $3, t, h, a, $4, n FROM unnest($5::text[], $6::text[], $7::int[], $8::text[], $9::int[]) AS x(u, t, h, a, n)`,
				back, roomID, e.EventID, e.OriginServerTS, users, threads, hl, acts, notify)
		}
		if len(e.Fed) > 0 {
			// The event's queue entries (store.NewEvent.Fed): one payload,
			// one row per destination, as FedEnqueue writes a PDU.
			dests := slices.Clone(e.Fed)
			slices.Sort(dests)
			p.exec(nil, `WITH pl AS (INSERT INTO fed_payloads (event_id, json) VALUES ($1, $2) RETURNING id)
				INSERT INTO fed_queue_pdus (destination, payload_id) SELECT DISTINCT d, pl.id FROM pl, unnest($3::text[]) AS d`,
				e.EventID, e.JSON, slices.Compact(dests))
		}
		if e.TxnID != "" {
			p.exec(conflictErr, `INSERT INTO txns (user_id, device_id, room_id, txn_id, event_id) VALUES ($1, $2, $3, $4, $5)`, e.Sender, e.SenderDevice, roomID, e.TxnID, e.EventID)
		}
		if e.StateKey != nil {
			p.exec(nil, `INSERT INTO room_state (room_id, type, state_key, event_id, pos) VALUES ($1, $2, $3, $4, `+lastPosSQL+` - $5)
				ON CONFLICT (room_id, type, state_key) DO UPDATE SET event_id = excluded.event_id, pos = excluded.pos`,
				roomID, e.Type, *e.StateKey, e.EventID, back)
			if e.Type == "m.room.member" {
				p.exec(nil, `INSERT INTO memberships (room_id, user_id, membership, event_id, pos) VALUES ($1, $2, $3, $4, `+lastPosSQL+` - $5)
					ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership, event_id = excluded.event_id, pos = excluded.pos, forgotten = false`,
					roomID, *e.StateKey, e.Membership, e.EventID, back)
			}
			p.exec(nil, stateGroupEntriesSQL, roomID, e.Type, *e.StateKey)
		}
		if e.Redacts != "" {
			// Only the first redaction counts; the target may be unknown or in
			// another room, in which case nothing is marked.
			p.exec(nil, `UPDATE events SET redacted_by = $1 WHERE event_id = $2 AND room_id = $3 AND redacted_by = ''`, e.EventID, e.Redacts, roomID)
		}
	}
	// The last event replaces the extremities the first one cites (all of
	// them, unless the room has more than a local event may cite); the
	// others stay.
	if prev := events[0].PrevEvents; prev == nil {
		p.exec(nil, `DELETE FROM forward_extremities WHERE room_id = $1`, roomID)
	} else {
		p.exec(nil, `DELETE FROM forward_extremities WHERE room_id = $1 AND event_id = ANY($2::text[])`, roomID, prev)
	}
	p.exec(nil, `INSERT INTO forward_extremities (room_id, event_id) VALUES ($1, $2)`, roomID, events[len(events)-1].EventID)
	return func() []int64 {
		positions := make([]int64, n)
		for i := range positions {
			positions[i] = first + int64(i)
		}
		return positions
	}
}

// newStateGroupSQL ($1 room ID) adds the group of the state after a state
// event that extends the room's current state: a delta on the current group,
// or a snapshot when the room has none yet or the chain of deltas reached
// store.MaxStateGroupChain. stateGroupEntriesSQL ($1 room ID, $2 type, $3
// state_key) then fills it from room_state, already updated for the event:
// every row for a snapshot, the event's own key for a delta.
const (
	newStateGroupSQL = `INSERT INTO state_groups (room_id, prev_id, chain)
		SELECT r.room_id, CASE WHEN g.id IS NULL OR g.chain >= ` + maxChainSQL + ` THEN 0 ELSE g.id END,
			CASE WHEN g.id IS NULL OR g.chain >= ` + maxChainSQL + ` THEN 0 ELSE g.chain + 1 END
		FROM rooms r LEFT JOIN state_groups g ON g.id = r.state_group WHERE r.room_id = $1`
	stateGroupEntriesSQL = `INSERT INTO state_group_entries (group_id, type, state_key, event_id)
		SELECT g.id, s.type, s.state_key, s.event_id FROM rooms r JOIN state_groups g ON g.id = r.state_group JOIN room_state s ON s.room_id = r.room_id
		WHERE r.room_id = $1 AND (g.chain = 0 OR (s.type = $2 AND s.state_key = $3))`
	maxChainSQL = "99" // store.MaxStateGroupChain - 1
)

// conflictErr maps a uniqueness violation to store.ErrConflict.
func conflictErr(err error) error {
	if isConstraint(err) {
		return store.ErrConflict
	}
	return err
}

// roomChangedErr maps the extremity check's division by zero to
// store.ErrRoomChanged.
func roomChangedErr(err error) error {
	if pgCode(err) == "22012" {
		return store.ErrRoomChanged
	}
	return err
}

func (db *DB) SetRoomPublic(ctx context.Context, roomID string, public bool) error {
	tag, err := db.pool.Exec(ctx, `UPDATE rooms SET public = $1 WHERE room_id = $2`, public, roomID)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return store.ErrNotFound
	}
	return nil
}

func (db *DB) ForgetRoom(ctx context.Context, userID, roomID string) error {
	_, err := db.pool.Exec(ctx, `UPDATE memberships SET forgotten = true WHERE room_id = $1 AND user_id = $2`, roomID, userID)
	return err
}

func (db *DB) IsForgotten(ctx context.Context, userID, roomID string) (bool, error) {
	var f bool
	err := db.pool.QueryRow(ctx, `SELECT forgotten FROM memberships WHERE room_id = $1 AND user_id = $2`, roomID, userID).Scan(&f)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return f, err
}

func (db *DB) CreateAlias(ctx context.Context, alias, roomID, creator string) error {
	_, err := db.pool.Exec(ctx, `INSERT INTO room_aliases (alias, room_id, creator) VALUES ($1, $2, $3)`, alias, roomID, creator)
	if isConstraint(err) {
		return store.ErrConflict
	}
	return err
}

func (db *DB) GetAlias(ctx context.Context, alias string) (string, string, error) {
	var roomID, creator string
	err := db.pool.QueryRow(ctx, `SELECT room_id, creator FROM room_aliases WHERE alias = $1`, alias).Scan(&roomID, &creator)
	return roomID, creator, notFound(err)
}

func (db *DB) DeleteAlias(ctx context.Context, alias string) error {
	tag, err := db.pool.Exec(ctx, `DELETE FROM room_aliases WHERE alias = $1`, alias)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return store.ErrNotFound
	}
	return nil
}

func (db *DB) AliasesForRoom(ctx context.Context, roomID string) ([]string, error) {
	return queryStrings(ctx, db.pool, `SELECT alias FROM room_aliases WHERE room_id = $1 ORDER BY alias COLLATE "C"`, roomID)
}

// PersistGraphEvent implements store.Graph, carried to its outcome even if
// ctx ends (as PersistEvents).
func (db *DB) PersistGraphEvent(ctx context.Context, w *store.GraphWrite) (pos, group int64, err error) {
	return db.Shared.PersistGraphEvent(context.WithoutCancel(ctx), w)
}

// PersistGraphEvents implements store.Graph, carried to its outcome even if
// ctx ends (as PersistEvents).
func (db *DB) PersistGraphEvents(ctx context.Context, ws []*store.GraphWrite) (pos, groups []int64, err error) {
	return db.Shared.PersistGraphEvents(context.WithoutCancel(ctx), ws)
}

// FedTxnRecord implements store.FedTxns, carried to its outcome even if ctx
// ends (as PersistEvents): a transaction whose events were taken in must
// keep its answer, or a retry would be processed again.
func (db *DB) FedTxnRecord(ctx context.Context, origin, txnID string, answer []byte, nowMS int64) error {
	return db.Shared.FedTxnRecord(context.WithoutCancel(ctx), origin, txnID, answer, nowMS)
}
