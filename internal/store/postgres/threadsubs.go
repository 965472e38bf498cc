package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"conclave/internal/store"
)

func (db *DB) ThreadSubscription(ctx context.Context, userID, roomID, threadID string) (store.ThreadSubscription, error) {
	t := store.ThreadSubscription{RoomID: roomID, ThreadID: threadID}
	err := db.pool.QueryRow(ctx, `SELECT subscribed, automatic, unsubscribed_pos, pos FROM thread_subscriptions
		WHERE user_id = $1 AND room_id = $2 AND thread_id = $3`, userID, roomID, threadID).Scan(&t.Subscribed, &t.Automatic, &t.UnsubscribedPos, &t.Pos)
	return t, notFound(err)
}

func (db *DB) SwapThreadSubscription(ctx context.Context, userID, roomID, threadID string, subscribed, automatic bool, expectPos int64) (int64, bool, error) {
	var pos int64
	var swapped bool
	err := db.tx(ctx, func(tx pgx.Tx) error {
		pos, swapped = 0, false
		var cur, unsub int64
		err := tx.QueryRow(ctx, `SELECT pos, unsubscribed_pos FROM thread_subscriptions WHERE user_id = $1 AND room_id = $2 AND thread_id = $3 FOR UPDATE`,
			userID, roomID, threadID).Scan(&cur, &unsub)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if cur != expectPos {
			return nil
		}
		if err := tx.QueryRow(ctx, `UPDATE stream SET pos = pos + 1 WHERE id = 1 RETURNING pos`).Scan(&pos); err != nil {
			return err
		}
		if !subscribed {
			unsub = pos
		}
		// A row inserted meanwhile by another transaction (none was there
		// to lock) makes this one fail on the key: nothing written.
		tag, err := tx.Exec(ctx, `INSERT INTO thread_subscriptions (user_id, room_id, thread_id, subscribed, automatic, unsubscribed_pos, pos)
			VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (user_id, room_id, thread_id) DO UPDATE SET subscribed = excluded.subscribed, automatic = excluded.automatic,
				unsubscribed_pos = excluded.unsubscribed_pos, pos = excluded.pos
			WHERE thread_subscriptions.pos = $8`,
			userID, roomID, threadID, subscribed, automatic, unsub, pos, expectPos)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return errNotSwapped
		}
		swapped = true
		return nil
	})
	if errors.Is(err, errNotSwapped) {
		return 0, false, nil
	}
	if err != nil || !swapped {
		return 0, false, err
	}
	return pos, true, nil
}

// errNotSwapped rolls back a swap that found the row changed after all.
var errNotSwapped = errors.New("thread subscription changed meanwhile")

func (db *DB) ThreadSubscriptionChanges(ctx context.Context, userID string, after, upto int64, limit int) ([]store.ThreadSubscription, error) {
	rows, err := db.pool.Query(ctx, `SELECT room_id, thread_id, subscribed, automatic, unsubscribed_pos, pos FROM thread_subscriptions
		WHERE user_id = $1 AND pos > $2 AND pos <= $3 ORDER BY pos DESC LIMIT $4`, userID, after, upto, limit)
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
