package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strconv"

	"conclave/internal/store"
)

func (db *DB) PutAccountData(ctx context.Context, userID, roomID, typ string, content json.RawMessage) (int64, error) {
	var pos int64
	err := db.tx(ctx, func(tx *Tx) error {
		var err error
		if pos, err = nextPos(ctx, tx, 1); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO account_data (user_id, room_id, type, content, pos) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (user_id, room_id, type) DO UPDATE SET content = excluded.content, pos = excluded.pos`,
			userID, roomID, typ, []byte(content), pos)
		return err
	})
	return pos, err
}

func (db *DB) SwapAccountData(ctx context.Context, userID, roomID, typ string, old, content json.RawMessage) (int64, bool, error) {
	var pos int64
	swapped := false
	err := db.tx(ctx, func(tx *Tx) error {
		var cur []byte
		err := tx.QueryRowContext(ctx, `SELECT content FROM account_data WHERE user_id = ? AND room_id = ? AND type = ?`, userID, roomID, typ).Scan(&cur)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if (err == nil) != (old != nil) || !bytes.Equal(cur, old) {
			return nil
		}
		if pos, err = nextPos(ctx, tx, 1); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO account_data (user_id, room_id, type, content, pos) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (user_id, room_id, type) DO UPDATE SET content = excluded.content, pos = excluded.pos`,
			userID, roomID, typ, []byte(content), pos)
		swapped = err == nil
		return err
	})
	if !swapped {
		pos = 0
	}
	return pos, swapped, err
}

func (db *DB) GetAccountData(ctx context.Context, userID, roomID, typ string) (json.RawMessage, error) {
	var c []byte
	err := db.r.QueryRowContext(ctx, `SELECT content FROM account_data WHERE user_id = ? AND room_id = ? AND type = ?`, userID, roomID, typ).Scan(&c)
	return c, notFound(err)
}

func (db *DB) AccountDataSince(ctx context.Context, userID string, pos int64) ([]store.AccountDataItem, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT room_id, type, content, pos FROM account_data WHERE user_id = ? AND pos > ? ORDER BY pos`, userID, pos)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.AccountDataItem
	for rows.Next() {
		var it store.AccountDataItem
		var c []byte
		if err := rows.Scan(&it.RoomID, &it.Type, &c, &it.Pos); err != nil {
			return nil, err
		}
		it.Content = c
		out = append(out, it)
	}
	return out, rows.Err()
}

func (db *DB) PutReceipt(ctx context.Context, r *store.Receipt) (int64, error) {
	var pos int64
	err := db.tx(ctx, func(tx *Tx) error {
		var err error
		if pos, err = nextPos(ctx, tx, 1); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO receipts (room_id, user_id, type, thread_id, event_id, ts, pos) VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (room_id, user_id, type, thread_id) DO UPDATE SET event_id = excluded.event_id, ts = excluded.ts, pos = excluded.pos`,
			r.RoomID, r.UserID, r.Type, r.ThreadID, r.EventID, r.TS, pos)
		return err
	})
	return pos, err
}

func (db *DB) ReceiptsSince(ctx context.Context, roomIDs []string, pos int64) ([]store.Receipt, error) {
	var out []store.Receipt
	for len(roomIDs) > 0 {
		n := min(len(roomIDs), maxInArgs)
		args := append(stringArgs(roomIDs[:n]), pos)
		rows, err := db.r.QueryContext(ctx, `SELECT room_id, user_id, type, thread_id, event_id, ts, pos FROM receipts WHERE room_id IN (`+placeholders(n)+`) AND pos > ? ORDER BY pos`, args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var r store.Receipt
			if err := rows.Scan(&r.RoomID, &r.UserID, &r.Type, &r.ThreadID, &r.EventID, &r.TS, &r.Pos); err != nil {
				rows.Close()
				return nil, err
			}
			out = append(out, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		roomIDs = roomIDs[n:]
	}
	return out, nil
}

func (db *DB) PutFilter(ctx context.Context, userID string, filter json.RawMessage) (string, error) {
	var id int64
	err := db.tx(ctx, func(tx *Tx) error {
		if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(filter_id), -1) + 1 FROM filters WHERE user_id = ?`, userID).Scan(&id); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO filters (user_id, filter_id, json) VALUES (?, ?, ?)`, userID, id, []byte(filter))
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
	err = db.r.QueryRowContext(ctx, `SELECT json FROM filters WHERE user_id = ? AND filter_id = ?`, userID, id).Scan(&b)
	return b, notFound(err)
}
