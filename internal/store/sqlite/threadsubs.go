package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"conclave/internal/store"
)

func (db *DB) ThreadSubscription(ctx context.Context, userID, roomID, threadID string) (store.ThreadSubscription, error) {
	t := store.ThreadSubscription{RoomID: roomID, ThreadID: threadID}
	err := db.r.QueryRowContext(ctx, `SELECT subscribed, automatic, unsubscribed_pos, pos FROM thread_subscriptions
		WHERE user_id = ? AND room_id = ? AND thread_id = ?`, userID, roomID, threadID).Scan(&t.Subscribed, &t.Automatic, &t.UnsubscribedPos, &t.Pos)
	return t, notFound(err)
}

func (db *DB) SwapThreadSubscription(ctx context.Context, userID, roomID, threadID string, subscribed, automatic bool, expectPos int64) (int64, bool, error) {
	var pos int64
	swapped := false
	err := db.tx(ctx, func(tx *Tx) error {
		var cur, unsub int64
		err := tx.QueryRowContext(ctx, `SELECT pos, unsubscribed_pos FROM thread_subscriptions WHERE user_id = ? AND room_id = ? AND thread_id = ?`,
			userID, roomID, threadID).Scan(&cur, &unsub)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if cur != expectPos {
			return nil
		}
		if pos, err = nextPos(ctx, tx, 1); err != nil {
			return err
		}
		if !subscribed {
			unsub = pos
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO thread_subscriptions (user_id, room_id, thread_id, subscribed, automatic, unsubscribed_pos, pos)
			VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (user_id, room_id, thread_id) DO UPDATE SET subscribed = excluded.subscribed, automatic = excluded.automatic,
				unsubscribed_pos = excluded.unsubscribed_pos, pos = excluded.pos`,
			userID, roomID, threadID, subscribed, automatic, unsub, pos)
		swapped = err == nil
		return err
	})
	if !swapped {
		pos = 0
	}
	return pos, swapped, err
}

func (db *DB) ThreadSubscriptionChanges(ctx context.Context, userID string, after, upto int64, limit int) ([]store.ThreadSubscription, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT room_id, thread_id, subscribed, automatic, unsubscribed_pos, pos FROM thread_subscriptions
		WHERE user_id = ? AND pos > ? AND pos <= ? ORDER BY pos DESC LIMIT ?`, userID, after, upto, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.ThreadSubscription
	for rows.Next() {
		var t store.ThreadSubscription
		if err := rows.Scan(&t.RoomID, &t.ThreadID, &t.Subscribed, &t.Automatic, &t.UnsubscribedPos, &t.Pos); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}
