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
		// A new pusher delivers what comes after the newest event (so
		// after the user's latest notification), not their history.
		_, err = tx.Exec(ctx, `INSERT INTO pushers (user_id, device_id, app_id, pushkey, kind, app_display_name, device_display_name, profile_tag, lang, data, created_ts, last_pos)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, (SELECT coalesce(max(pos), 0) FROM events))
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

const pusherColumns = `user_id, device_id, app_id, pushkey, kind, app_display_name, device_display_name, profile_tag, lang, data, created_ts, last_pos, failing_since, retry_at`

func scanPusher(r Row, p *store.Pusher) error {
	var data []byte
	err := r.Scan(&p.UserID, &p.DeviceID, &p.AppID, &p.PushKey, &p.Kind, &p.AppDisplayName, &p.DeviceDisplayName, &p.ProfileTag, &p.Lang, &data, &p.CreatedTS,
		&p.LastPos, &p.FailingSince, &p.RetryAt)
	p.Data = data
	return err
}

func (s *Shared) DuePushers(ctx context.Context, now int64, limit int) ([]store.Pusher, error) {
	rows, err := s.b.Read().Query(ctx, `SELECT `+pusherColumns+` FROM pushers p
		WHERE p.kind IN ('http', 'email') AND p.retry_at <= ? AND p.claimed_until <= ?
		AND (EXISTS (SELECT 1 FROM event_push_actions n WHERE n.user_id = p.user_id AND n.pos > p.last_pos AND n.notify = 1)
			OR EXISTS (SELECT 1 FROM memberships m JOIN event_notifs c ON c.room_id = m.room_id
				WHERE m.user_id = p.user_id AND c.pos > p.last_pos AND `+commonForUserSQL+`))
		ORDER BY p.retry_at, p.user_id`+s.d.Collate+` LIMIT ?`, now, now, limit)
	return collect(rows, err, func(r Rows, p *store.Pusher) error { return scanPusher(r, p) })
}

func (s *Shared) ClaimPusher(ctx context.Context, p *store.Pusher, owner string, now, until int64) (bool, error) {
	var held bool
	err := s.b.Tx(ctx, func(tx Querier) error {
		n, err := tx.Exec(ctx, `UPDATE pushers SET claimed_by = ?, claimed_until = ?
			WHERE user_id = ? AND app_id = ? AND pushkey = ? AND (claimed_until <= ? OR claimed_by = ?)`,
			owner, until, p.UserID, p.AppID, p.PushKey, now, owner)
		if err != nil {
			return err
		}
		held = n == 1
		if !held {
			return nil
		}
		return scanPusher(tx.QueryRow(ctx, `SELECT `+pusherColumns+` FROM pushers WHERE user_id = ? AND app_id = ? AND pushkey = ?`,
			p.UserID, p.AppID, p.PushKey), p)
	})
	return held, err
}

func (s *Shared) PushPending(ctx context.Context, userID string, after int64, limit int) ([]store.Notification, error) {
	rows, err := s.b.Read().Query(ctx, notificationsSQL(` AND x.pos > ?`, "ASC"), userID, after, userID, after, limit)
	return collect(rows, err, func(r Rows, n *store.Notification) error {
		var hl int64
		var acts string
		err := r.Scan(&n.Pos, &n.RoomID, &n.EventID, &n.ThreadID, &hl, &acts, &n.TS)
		n.UserID, n.Highlight, n.Actions = userID, hl != 0, []byte(acts)
		return err
	})
}

func (s *Shared) UpdatePusher(ctx context.Context, p *store.Pusher, owner string, lastPos, failingSince, retryAt, claimedUntil int64) (bool, error) {
	n, err := s.b.Write().Exec(ctx, `UPDATE pushers SET last_pos = CASE WHEN last_pos > ? THEN last_pos ELSE ? END,
			failing_since = ?, retry_at = ?, claimed_until = ?
		WHERE user_id = ? AND app_id = ? AND pushkey = ? AND claimed_by = ?`,
		lastPos, lastPos, failingSince, retryAt, claimedUntil, p.UserID, p.AppID, p.PushKey, owner)
	return n == 1, err
}

func (s *Shared) ReleaseClaims(ctx context.Context) error {
	_, err := s.b.Write().Exec(ctx, `UPDATE pushers SET claimed_by = '', claimed_until = 0 WHERE claimed_until > 0`)
	return err
}

func (s *Shared) MarkRead(ctx context.Context, userID string, ns []store.Notification) error {
	points := map[string]map[string]int64{}
	for i := range ns {
		n := &ns[i]
		p, ok := points[n.RoomID]
		if !ok {
			var err error
			if p, err = s.readPoints(ctx, n.RoomID, userID); err != nil {
				return err
			}
			points[n.RoomID] = p
		}
		n.Read = n.Pos <= p[""] || n.Pos <= p[n.ThreadID]
	}
	return nil
}
