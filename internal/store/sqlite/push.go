package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"conclave/internal/store"
)

// A device's pushers go with it (spec: pushers belong to the access token
// that created them; here the device is the token's owner).
func init() {
	deviceCleanups = append(deviceCleanups, `DELETE FROM pushers WHERE user_id = ? AND device_id = ?`)
}

func (db *DB) SetPusher(ctx context.Context, p *store.Pusher, replaceOthers bool, max int) error {
	return db.tx(ctx, func(tx *Tx) error {
		var exists int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM pushers WHERE user_id = ? AND app_id = ? AND pushkey = ?`, p.UserID, p.AppID, p.PushKey).Scan(&exists)
		if errors.Is(err, sql.ErrNoRows) {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM pushers WHERE user_id = ?`, p.UserID).Scan(&n); err != nil {
				return err
			}
			if n >= max {
				return store.ErrTooManyPushers
			}
		} else if err != nil {
			return err
		}
		if replaceOthers {
			if _, err := tx.ExecContext(ctx, `DELETE FROM pushers WHERE app_id = ? AND pushkey = ? AND user_id <> ?`, p.AppID, p.PushKey, p.UserID); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO pushers (user_id, device_id, app_id, pushkey, kind, app_display_name, device_display_name, profile_tag, lang, data, created_ts)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET device_id = excluded.device_id, kind = excluded.kind,
				app_display_name = excluded.app_display_name, device_display_name = excluded.device_display_name,
				profile_tag = excluded.profile_tag, lang = excluded.lang, data = excluded.data`,
			p.UserID, p.DeviceID, p.AppID, p.PushKey, p.Kind, p.AppDisplayName, p.DeviceDisplayName, p.ProfileTag, p.Lang, []byte(p.Data), p.CreatedTS)
		return err
	})
}

func (db *DB) DeletePusher(ctx context.Context, userID, appID, pushKey string) error {
	_, err := db.w.ExecContext(ctx, `DELETE FROM pushers WHERE user_id = ? AND app_id = ? AND pushkey = ?`, userID, appID, pushKey)
	return err
}

func (db *DB) PushersOf(ctx context.Context, userID string) ([]store.Pusher, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT user_id, device_id, app_id, pushkey, kind, app_display_name, device_display_name, profile_tag, lang, data, created_ts
		FROM pushers WHERE user_id = ? ORDER BY created_ts, app_id, pushkey`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Pusher
	for rows.Next() {
		var p store.Pusher
		var data []byte
		if err := rows.Scan(&p.UserID, &p.DeviceID, &p.AppID, &p.PushKey, &p.Kind, &p.AppDisplayName, &p.DeviceDisplayName, &p.ProfileTag, &p.Lang, &data, &p.CreatedTS); err != nil {
			return nil, err
		}
		p.Data = data
		out = append(out, p)
	}
	return out, rows.Err()
}
