package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"

	"github.com/jackc/pgx/v5"

	"conclave/internal/store"
)

func (db *DB) PutAccountData(ctx context.Context, userID, roomID, typ string, content json.RawMessage) (int64, error) {
	// One round trip (see pipeline): the stream row lock is held only while
	// the server writes the row and commits.
	var p pipeline
	var pos int64
	p.allocPos(ctx, 1, &pos)
	p.exec(nil, `INSERT INTO account_data (user_id, room_id, type, content, pos) VALUES ($1, $2, $3, $4, `+lastPosSQL+`)
		ON CONFLICT (user_id, room_id, type) DO UPDATE SET content = excluded.content, pos = excluded.pos`,
		userID, roomID, typ, []byte(content))
	if err := db.run(ctx, &p); err != nil {
		return 0, err
	}
	return pos, nil
}

func (db *DB) SwapAccountData(ctx context.Context, userID, roomID, typ string, old, content json.RawMessage) (int64, bool, error) {
	// One round trip: the upsert happens only if the row is still as read
	// (absent, or with the old content); a position allocated for a swap
	// that did not happen is left without a row, which readers skip.
	var p pipeline
	var pos int64
	swapped := false
	p.allocPos(ctx, 1, &pos)
	scan := func(r pgx.Row) error {
		var one int
		swapped = false
		err := r.Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		swapped = err == nil
		return err
	}
	if old == nil {
		p.queryRow(scan, `INSERT INTO account_data (user_id, room_id, type, content, pos) VALUES ($1, $2, $3, $4, `+lastPosSQL+`)
			ON CONFLICT (user_id, room_id, type) DO NOTHING RETURNING 1`, userID, roomID, typ, []byte(content))
	} else {
		p.queryRow(scan, `UPDATE account_data SET content = $4, pos = `+lastPosSQL+`
			WHERE user_id = $1 AND room_id = $2 AND type = $3 AND content = $5 RETURNING 1`, userID, roomID, typ, []byte(content), []byte(old))
	}
	if err := db.run(ctx, &p); err != nil {
		return 0, false, err
	}
	if !swapped {
		return 0, false, nil
	}
	return pos, true, nil
}

func (db *DB) GetAccountData(ctx context.Context, userID, roomID, typ string) (json.RawMessage, error) {
	var c []byte
	err := db.pool.QueryRow(ctx, `SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND type = $3`, userID, roomID, typ).Scan(&c)
	if err != nil {
		return nil, notFound(err)
	}
	return c, nil
}

func (db *DB) AccountDataSince(ctx context.Context, userID string, pos int64) ([]store.AccountDataItem, error) {
	rows, err := db.pool.Query(ctx, `SELECT room_id, type, content, pos FROM account_data WHERE user_id = $1 AND pos > $2 ORDER BY pos`, userID, pos)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.AccountDataItem, error) {
		var it store.AccountDataItem
		var c []byte
		err := row.Scan(&it.RoomID, &it.Type, &c, &it.Pos)
		it.Content = c
		return it, err
	})
	if len(out) == 0 {
		out = nil
	}
	return out, err
}

func (db *DB) PutReceipt(ctx context.Context, r *store.Receipt) (int64, error) {
	var p pipeline
	var pos int64
	p.allocPos(ctx, 1, &pos)
	p.exec(nil, `INSERT INTO receipts (room_id, user_id, type, thread_id, event_id, ts, pos) VALUES ($1, $2, $3, $4, $5, $6, `+lastPosSQL+`)
		ON CONFLICT (room_id, user_id, type, thread_id) DO UPDATE SET event_id = excluded.event_id, ts = excluded.ts, pos = excluded.pos`,
		r.RoomID, r.UserID, r.Type, r.ThreadID, r.EventID, r.TS)
	if err := db.run(ctx, &p); err != nil {
		return 0, err
	}
	return pos, nil
}

func (db *DB) ReceiptsSince(ctx context.Context, roomIDs []string, pos int64) ([]store.Receipt, error) {
	var out []store.Receipt
	for len(roomIDs) > 0 {
		n := min(len(roomIDs), maxInArgs)
		rows, err := db.pool.Query(ctx, `SELECT room_id, user_id, type, thread_id, event_id, ts, pos FROM receipts WHERE room_id = ANY($1) AND pos > $2 ORDER BY pos`, roomIDs[:n], pos)
		if err != nil {
			return nil, err
		}
		rs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Receipt, error) {
			var r store.Receipt
			err := row.Scan(&r.RoomID, &r.UserID, &r.Type, &r.ThreadID, &r.EventID, &r.TS, &r.Pos)
			return r, err
		})
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
		roomIDs = roomIDs[n:]
	}
	return out, nil
}

func (db *DB) PutFilter(ctx context.Context, userID string, filter json.RawMessage) (string, error) {
	var id int64
	// The per-user advisory lock makes concurrent uploads take 0, 1, 2…
	// instead of colliding on max+1.
	err := db.tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, filterLockClass, userID); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(filter_id), -1) + 1 FROM filters WHERE user_id = $1`, userID).Scan(&id); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO filters (user_id, filter_id, json) VALUES ($1, $2, $3)`, userID, id, []byte(filter))
		return err
	})
	return strconv.FormatInt(id, 10), err
}

func (db *DB) GetFilter(ctx context.Context, userID, filterID string) (json.RawMessage, error) {
	id, err := strconv.ParseInt(filterID, 10, 64)
	if err != nil {
		return nil, store.ErrNotFound
	}
	var b []byte
	err = db.pool.QueryRow(ctx, `SELECT json FROM filters WHERE user_id = $1 AND filter_id = $2`, userID, id).Scan(&b)
	if err != nil {
		return nil, notFound(err)
	}
	return b, nil
}
