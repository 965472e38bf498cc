package postgres

import (
	"context"
	"errors"
	"slices"

	"github.com/jackc/pgx/v5"

	"conclave/internal/store"
)

func (db *DB) CreateRoom(ctx context.Context, r *store.Room, events []store.NewEvent) ([]int64, error) {
	var positions []int64
	err := db.tx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO rooms (room_id, version, creator, created_ts, public) VALUES ($1, $2, $3, $4, $5)`,
			r.RoomID, r.Version, r.Creator, r.CreatedTS, r.Public)
		if isConstraint(err) {
			return store.ErrConflict
		}
		if err != nil {
			return err
		}
		positions, err = persistEventsTx(ctx, tx, r.RoomID, events)
		return err
	})
	return positions, err
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
	var positions []int64
	err := db.tx(ctx, func(tx pgx.Tx) error {
		var err error
		positions, err = persistEventsTx(ctx, tx, roomID, events)
		return err
	})
	return positions, err
}

func persistEventsTx(ctx context.Context, tx pgx.Tx, roomID string, events []store.NewEvent) ([]int64, error) {
	if len(events) == 0 {
		return nil, nil
	}
	// One writer per room across processes, then the check that this writer
	// built on the room's current head.
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, roomLockClass, roomID); err != nil {
		return nil, err
	}
	if prev := events[0].PrevEvents; prev != nil {
		cur, err := queryStrings(ctx, tx, `SELECT event_id FROM forward_extremities WHERE room_id = $1`, roomID)
		if err != nil {
			return nil, err
		}
		if !sameSet(cur, prev) {
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
		_, err := tx.Exec(ctx, `INSERT INTO events (pos, event_id, room_id, type, state_key, sender, depth, origin_server_ts, json, replaces_state, membership, relates_to, rel_type, sender_device, txn_id, contains_url)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
			pos, e.EventID, roomID, e.Type, e.StateKey, e.Sender, e.Depth, e.OriginServerTS, e.JSON, e.ReplacesState, e.Membership, e.RelatesTo, e.RelType, e.SenderDevice, e.TxnID, e.ContainsURL)
		if isConstraint(err) {
			return nil, store.ErrConflict
		}
		if err != nil {
			return nil, err
		}
		if e.TxnID != "" {
			if _, err := tx.Exec(ctx, `INSERT INTO txns (user_id, device_id, room_id, txn_id, event_id) VALUES ($1, $2, $3, $4, $5)`, e.Sender, e.SenderDevice, roomID, e.TxnID, e.EventID); err != nil {
				if isConstraint(err) {
					return nil, store.ErrConflict
				}
				return nil, err
			}
		}
		if e.StateKey != nil {
			if _, err := tx.Exec(ctx, `INSERT INTO room_state (room_id, type, state_key, event_id, pos) VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (room_id, type, state_key) DO UPDATE SET event_id = excluded.event_id, pos = excluded.pos`,
				roomID, e.Type, *e.StateKey, e.EventID, pos); err != nil {
				return nil, err
			}
			if e.Type == "m.room.member" {
				if _, err := tx.Exec(ctx, `INSERT INTO memberships (room_id, user_id, membership, event_id, pos) VALUES ($1, $2, $3, $4, $5)
					ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership, event_id = excluded.event_id, pos = excluded.pos, forgotten = false`,
					roomID, *e.StateKey, e.Membership, e.EventID, pos); err != nil {
					return nil, err
				}
			}
		}
		if e.Redacts != "" {
			// Only the first redaction counts; the target may be unknown or in
			// another room, in which case nothing is marked.
			if _, err := tx.Exec(ctx, `UPDATE events SET redacted_by = $1 WHERE event_id = $2 AND room_id = $3 AND redacted_by = ''`, e.EventID, e.Redacts, roomID); err != nil {
				return nil, err
			}
		}
	}
	// The last event becomes the single forward extremity: local events form
	// a line. Federation will cite several.
	if _, err := tx.Exec(ctx, `DELETE FROM forward_extremities WHERE room_id = $1`, roomID); err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO forward_extremities (room_id, event_id) VALUES ($1, $2)`, roomID, events[len(events)-1].EventID); err != nil {
		return nil, err
	}
	return positions, nil
}

// sameSet reports whether a and b hold the same strings.
func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
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
