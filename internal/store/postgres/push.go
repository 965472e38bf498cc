package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"conclave/internal/store"
)

// A device's pushers go with it, as in the SQLite backend.
func init() {
	deviceCleanups = append(deviceCleanups, `DELETE FROM pushers WHERE user_id = $1 AND device_id = $2`)
}

func (db *DB) SetPusher(ctx context.Context, p *store.Pusher, replaceOthers bool, max int) error {
	return db.tx(ctx, func(tx pgx.Tx) error {
		// Serialise pusher changes per user so the limit holds under concurrency.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('pushers:' || $1, 0))`, p.UserID); err != nil {
			return err
		}
		var exists int
		err := tx.QueryRow(ctx, `SELECT 1 FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3`, p.UserID, p.AppID, p.PushKey).Scan(&exists)
		if errors.Is(err, pgx.ErrNoRows) {
			var n int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM pushers WHERE user_id = $1`, p.UserID).Scan(&n); err != nil {
				return err
			}
			if n >= max {
				return store.ErrTooManyPushers
			}
		} else if err != nil {
			return err
		}
		if replaceOthers {
			if _, err := tx.Exec(ctx, `DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2 AND user_id <> $3`, p.AppID, p.PushKey, p.UserID); err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, `INSERT INTO pushers (user_id, device_id, app_id, pushkey, kind, app_display_name, device_display_name, profile_tag, lang, data, created_ts)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
			ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET device_id = excluded.device_id, kind = excluded.kind,
				app_display_name = excluded.app_display_name, device_display_name = excluded.device_display_name,
				profile_tag = excluded.profile_tag, lang = excluded.lang, data = excluded.data`,
			p.UserID, p.DeviceID, p.AppID, p.PushKey, p.Kind, p.AppDisplayName, p.DeviceDisplayName, p.ProfileTag, p.Lang, []byte(p.Data), p.CreatedTS)
		return err
	})
}

func (db *DB) DeletePusher(ctx context.Context, userID, appID, pushKey string) error {
	_, err := db.pool.Exec(ctx, `DELETE FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3`, userID, appID, pushKey)
	return err
}

func (db *DB) PushersOf(ctx context.Context, userID string) ([]store.Pusher, error) {
	rows, err := db.pool.Query(ctx, `SELECT user_id, device_id, app_id, pushkey, kind, app_display_name, device_display_name, profile_tag, lang, data, created_ts
		FROM pushers WHERE user_id = $1 ORDER BY created_ts, app_id COLLATE "C", pushkey COLLATE "C"`, userID)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Pusher, error) {
		var p store.Pusher
		var data []byte
		err := row.Scan(&p.UserID, &p.DeviceID, &p.AppID, &p.PushKey, &p.Kind, &p.AppDisplayName, &p.DeviceDisplayName, &p.ProfileTag, &p.Lang, &data, &p.CreatedTS)
		p.Data = data
		return p, err
	})
	if len(out) == 0 {
		out = nil
	}
	return out, err
}
