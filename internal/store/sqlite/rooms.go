package sqlite

import (
	"context"
	"database/sql"
	"slices"

	"conclave/internal/store"
	"conclave/internal/store/sqlstore"
)

func (db *DB) CreateRoom(ctx context.Context, r *store.Room, events []store.NewEvent) ([]int64, error) {
	var positions []int64
	err := db.tx(ctx, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO rooms (room_id, version, creator, created_ts, public) VALUES (?, ?, ?, ?, ?)`,
			r.RoomID, r.Version, r.Creator, r.CreatedTS, boolInt(r.Public))
		if isConstraint(err) {
			return store.ErrConflict
		}
		if err != nil {
			return err
		}
		positions, err = persistEventsTx(ctx, db.Shared, tx, r.RoomID, events)
		return err
	})
	return positions, err
}

func (db *DB) GetRoom(ctx context.Context, roomID string) (*store.Room, error) {
	r := store.Room{RoomID: roomID}
	err := db.r.QueryRowContext(ctx, `SELECT version, creator, created_ts, public FROM rooms WHERE room_id = ?`, roomID).
		Scan(&r.Version, &r.Creator, &r.CreatedTS, &r.Public)
	if err != nil {
		return nil, notFound(err)
	}
	return &r, nil
}

func (db *DB) LoadRoomSnapshot(ctx context.Context, roomID string) (*store.RoomSnapshot, error) {
	room, err := db.GetRoom(ctx, roomID)
	if err != nil {
		return nil, err
	}
	snap := &store.RoomSnapshot{Room: *room}
	snap.State, err = db.queryEvents(ctx, db.r, `SELECT `+eventColumns+` FROM room_state s JOIN events e ON e.event_id = s.event_id WHERE s.room_id = ?`, roomID)
	if err != nil {
		return nil, err
	}
	snap.Extremities, err = queryStrings(ctx, db.r, `SELECT event_id FROM forward_extremities WHERE room_id = ?`, roomID)
	if err != nil {
		return nil, err
	}
	err = db.r.QueryRowContext(ctx, `SELECT coalesce(max(depth), 0) FROM events WHERE room_id = ?`, roomID).Scan(&snap.MaxDepth)
	return snap, err
}

func persistEventsTx(ctx context.Context, sh *sqlstore.Shared, tx *Tx, roomID string, events []store.NewEvent) ([]int64, error) {
	if len(events) == 0 {
		return nil, nil
	}
	if prev := events[0].PrevEvents; prev != nil {
		// The writer must have built on the room's current head (see
		// store.NewEvent.PrevEvents); the write transaction holds the lock.
		cur, err := queryStrings(ctx, tx, `SELECT event_id FROM forward_extremities WHERE room_id = ?`, roomID)
		if err != nil {
			return nil, err
		}
		if !subset(prev, cur) {
			return nil, store.ErrRoomChanged
		}
	}
	first, err := nextPos(ctx, tx, len(events))
	if err != nil {
		return nil, err
	}
	positions := make([]int64, len(events))
	for i := range events {
		e := &events[i]
		pos := first + int64(i)
		positions[i] = pos
		var stateKey any
		if e.StateKey != nil {
			stateKey = *e.StateKey
			// The state after a state event is a new group: a delta on the
			// room's current group, or a snapshot (see newStateGroupSQL).
			if _, err := tx.ExecContext(ctx, newStateGroupSQL, roomID); err != nil {
				return nil, err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE rooms SET state_group = last_insert_rowid() WHERE room_id = ?`, roomID); err != nil {
				return nil, err
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO events (pos, event_id, room_id, type, state_key, sender, depth, origin_server_ts, json, replaces_state, membership, relates_to, rel_type, sender_device, txn_id, contains_url, state_group, current_group)
			VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, (SELECT state_group FROM rooms WHERE room_id = ?3), (SELECT state_group FROM rooms WHERE room_id = ?3))`,
			pos, e.EventID, roomID, e.Type, stateKey, e.Sender, e.Depth, e.OriginServerTS, e.JSON, e.ReplacesState, e.Membership, e.RelatesTo, e.RelType, e.SenderDevice, e.TxnID, boolInt(e.ContainsURL))
		if isConstraint(err) {
			return nil, store.ErrConflict
		}
		if err != nil {
			return nil, err
		}
		if err := sqlstore.InsertPushActions(ctx, sharedQuerier[*Tx]{tx}, false, e, pos); err != nil {
			return nil, err
		}
		if len(e.Fed) > 0 {
			if err := sh.FedEnqueueTx(ctx, sharedQuerier[*Tx]{tx}, store.FedEnqueue{Destinations: e.Fed, Item: store.FedItem{EventID: e.EventID, JSON: e.JSON}}); err != nil {
				return nil, err
			}
		}
		if e.TxnID != "" {
			if _, err := tx.ExecContext(ctx, `INSERT INTO txns (user_id, device_id, room_id, txn_id, event_id) VALUES (?, ?, ?, ?, ?)`, e.Sender, e.SenderDevice, roomID, e.TxnID, e.EventID); err != nil {
				if isConstraint(err) {
					return nil, store.ErrConflict
				}
				return nil, err
			}
		}
		if e.StateKey != nil {
			if _, err := tx.ExecContext(ctx, `INSERT INTO room_state (room_id, type, state_key, event_id, pos) VALUES (?, ?, ?, ?, ?)
				ON CONFLICT (room_id, type, state_key) DO UPDATE SET event_id = excluded.event_id, pos = excluded.pos`,
				roomID, e.Type, *e.StateKey, e.EventID, pos); err != nil {
				return nil, err
			}
			if _, err := tx.ExecContext(ctx, stateGroupEntriesSQL, roomID, e.Type, *e.StateKey); err != nil {
				return nil, err
			}
			if e.Type == "m.room.member" {
				if _, err := tx.ExecContext(ctx, `INSERT INTO memberships (room_id, user_id, membership, event_id, pos) VALUES (?, ?, ?, ?, ?)
					ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership, event_id = excluded.event_id, pos = excluded.pos, forgotten = 0`,
					roomID, *e.StateKey, e.Membership, e.EventID, pos); err != nil {
					return nil, err
				}
			}
		}
		if e.Redacts != "" {
			// Only the first redaction counts; the target may be unknown or in
			// another room, in which case nothing is marked.
			if _, err := tx.ExecContext(ctx, `UPDATE events SET redacted_by = ? WHERE event_id = ? AND room_id = ? AND redacted_by = ''`, e.EventID, e.Redacts, roomID); err != nil {
				return nil, err
			}
		}
	}
	// The last event replaces the extremities the first one cites (all of
	// them, unless the room has more than a local event may cite); the
	// others stay.
	if prev := events[0].PrevEvents; prev == nil {
		if _, err := tx.ExecContext(ctx, `DELETE FROM forward_extremities WHERE room_id = ?`, roomID); err != nil {
			return nil, err
		}
	} else {
		for _, id := range prev {
			if _, err := tx.ExecContext(ctx, `DELETE FROM forward_extremities WHERE room_id = ? AND event_id = ?`, roomID, id); err != nil {
				return nil, err
			}
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO forward_extremities (room_id, event_id) VALUES (?, ?)`, roomID, events[len(events)-1].EventID); err != nil {
		return nil, err
	}
	return positions, nil
}

// newStateGroupSQL (room ID) adds the group of the state after a state event
// that extends the room's current state: a delta on the current group, or a
// snapshot when the room has none yet or the chain of deltas reached
// store.MaxStateGroupChain. stateGroupEntriesSQL (room ID, type, state_key)
// then fills it from room_state, already updated for the event: every row for
// a snapshot, the event's own key for a delta.
const (
	newStateGroupSQL = `INSERT INTO state_groups (room_id, prev_id, chain)
		SELECT r.room_id, CASE WHEN g.id IS NULL OR g.chain >= ` + maxChainSQL + ` THEN 0 ELSE g.id END,
			CASE WHEN g.id IS NULL OR g.chain >= ` + maxChainSQL + ` THEN 0 ELSE g.chain + 1 END
		FROM rooms r LEFT JOIN state_groups g ON g.id = r.state_group WHERE r.room_id = ?`
	stateGroupEntriesSQL = `INSERT INTO state_group_entries (group_id, type, state_key, event_id)
		SELECT g.id, s.type, s.state_key, s.event_id FROM rooms r JOIN state_groups g ON g.id = r.state_group JOIN room_state s ON s.room_id = r.room_id
		WHERE r.room_id = ?1 AND (g.chain = 0 OR (s.type = ?2 AND s.state_key = ?3))`
	maxChainSQL = "99" // store.MaxStateGroupChain - 1
)

func (db *DB) SetRoomPublic(ctx context.Context, roomID string, public bool) error {
	res, err := db.w.ExecContext(ctx, `UPDATE rooms SET public = ? WHERE room_id = ?`, boolInt(public), roomID)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.ErrNotFound
	}
	return nil
}

func (db *DB) ForgetRoom(ctx context.Context, userID, roomID string) error {
	_, err := db.w.ExecContext(ctx, `UPDATE memberships SET forgotten = 1 WHERE room_id = ? AND user_id = ?`, roomID, userID)
	return err
}

func (db *DB) IsForgotten(ctx context.Context, userID, roomID string) (bool, error) {
	var f bool
	err := db.r.QueryRowContext(ctx, `SELECT forgotten FROM memberships WHERE room_id = ? AND user_id = ?`, roomID, userID).Scan(&f)
	if err == sql.ErrNoRows {
		return false, nil
	}
	return f, err
}

func (db *DB) CreateAlias(ctx context.Context, alias, roomID, creator string) error {
	_, err := db.w.ExecContext(ctx, `INSERT INTO room_aliases (alias, room_id, creator) VALUES (?, ?, ?)`, alias, roomID, creator)
	if isConstraint(err) {
		return store.ErrConflict
	}
	return err
}

func (db *DB) GetAlias(ctx context.Context, alias string) (string, string, error) {
	var roomID, creator string
	err := db.r.QueryRowContext(ctx, `SELECT room_id, creator FROM room_aliases WHERE alias = ?`, alias).Scan(&roomID, &creator)
	return roomID, creator, notFound(err)
}

func (db *DB) DeleteAlias(ctx context.Context, alias string) error {
	res, err := db.w.ExecContext(ctx, `DELETE FROM room_aliases WHERE alias = ?`, alias)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.ErrNotFound
	}
	return nil
}

func (db *DB) AliasesForRoom(ctx context.Context, roomID string) ([]string, error) {
	return queryStrings(ctx, db.r, `SELECT alias FROM room_aliases WHERE room_id = ? ORDER BY alias`, roomID)
}

// subset reports whether every string of a is in b.
func subset(a, b []string) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}
