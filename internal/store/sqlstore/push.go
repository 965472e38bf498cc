package sqlstore

import (
	"context"
	"database/sql"
	"errors"

	"conclave/internal/store"
)

func (s *Shared) SetPusher(ctx context.Context, p *store.Pusher, replaceOthers bool, max int) error {
	return s.b.Tx(ctx, func(tx Querier) error {
		// Pusher changes of one user are serialised so the limit holds.
		if err := s.b.Lock(ctx, tx, LockPushers, p.UserID); err != nil {
			return err
		}
		var exists int
		err := tx.QueryRow(ctx, `SELECT 1 FROM pushers WHERE user_id = ? AND app_id = ? AND pushkey = ?`, p.UserID, p.AppID, p.PushKey).Scan(&exists)
		if errors.Is(err, sql.ErrNoRows) {
			var n int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM pushers WHERE user_id = ?`, p.UserID).Scan(&n); err != nil {
				return err
			}
			if n >= max {
				return store.ErrTooManyPushers
			}
		} else if err != nil {
			return err
		}
		if replaceOthers {
			if _, err := tx.Exec(ctx, `DELETE FROM pushers WHERE app_id = ? AND pushkey = ? AND user_id <> ?`, p.AppID, p.PushKey, p.UserID); err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, `INSERT INTO pushers (user_id, device_id, app_id, pushkey, kind, app_display_name, device_display_name, profile_tag, lang, data, created_ts)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET device_id = excluded.device_id, kind = excluded.kind,
				app_display_name = excluded.app_display_name, device_display_name = excluded.device_display_name,
				profile_tag = excluded.profile_tag, lang = excluded.lang, data = excluded.data`,
			p.UserID, p.DeviceID, p.AppID, p.PushKey, p.Kind, p.AppDisplayName, p.DeviceDisplayName, p.ProfileTag, p.Lang, []byte(p.Data), p.CreatedTS)
		return err
	})
}

func (s *Shared) DeletePusher(ctx context.Context, userID, appID, pushKey string) error {
	_, err := s.b.Write().Exec(ctx, `DELETE FROM pushers WHERE user_id = ? AND app_id = ? AND pushkey = ?`, userID, appID, pushKey)
	return err
}

func (s *Shared) PushersOf(ctx context.Context, userID string) ([]store.Pusher, error) {
	rows, err := s.b.Read().Query(ctx, `SELECT user_id, device_id, app_id, pushkey, kind, app_display_name, device_display_name, profile_tag, lang, data, created_ts
		FROM pushers WHERE user_id = ? ORDER BY created_ts, app_id`+s.d.Collate+`, pushkey`+s.d.Collate, userID)
	return collect(rows, err, func(r Rows, p *store.Pusher) error {
		var data []byte
		err := r.Scan(&p.UserID, &p.DeviceID, &p.AppID, &p.PushKey, &p.Kind, &p.AppDisplayName, &p.DeviceDisplayName, &p.ProfileTag, &p.Lang, &data, &p.CreatedTS)
		p.Data = data
		return err
	})
}
