package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"strings"

	"conclave/internal/store"
)

func (db *DB) CreateUser(ctx context.Context, u *store.User) error {
	_, err := db.w.ExecContext(ctx, `INSERT INTO users (user_id, user_id_lower, password_hash, is_admin, is_guest, created_ts) VALUES (?, ?, ?, ?, ?, ?)`,
		u.UserID, strings.ToLower(u.UserID), u.PasswordHash, boolInt(u.IsAdmin), boolInt(u.IsGuest), u.CreatedTS)
	if isConstraint(err) {
		return store.ErrConflict
	}
	return err
}

func (db *DB) GetUser(ctx context.Context, userID string) (*store.User, error) {
	u := store.User{UserID: userID}
	err := db.r.QueryRowContext(ctx, `SELECT password_hash, is_admin, is_guest, deactivated, created_ts FROM users WHERE user_id = ?`, userID).
		Scan(&u.PasswordHash, &u.IsAdmin, &u.IsGuest, &u.Deactivated, &u.CreatedTS)
	if err != nil {
		return nil, notFound(err)
	}
	return &u, nil
}

func (db *DB) UserIDCaseless(ctx context.Context, userID string) (string, error) {
	var id string
	err := db.r.QueryRowContext(ctx, `SELECT user_id FROM users WHERE user_id_lower = ?`, strings.ToLower(userID)).Scan(&id)
	return id, notFound(err)
}

func (db *DB) UserIDTaken(ctx context.Context, userID string) (bool, error) {
	var n int
	err := db.r.QueryRowContext(ctx, `SELECT count(*) FROM users WHERE user_id_lower = ?`, strings.ToLower(userID)).Scan(&n)
	return n > 0, err
}

func (db *DB) SetPassword(ctx context.Context, userID, hash string, logoutExceptDevice *string) error {
	return db.tx(ctx, func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE users SET password_hash = ? WHERE user_id = ?`, hash, userID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return store.ErrNotFound
		}
		if logoutExceptDevice == nil {
			return nil
		}
		ids, err := queryStrings(ctx, tx, `SELECT device_id FROM devices WHERE user_id = ? AND device_id <> ?`, userID, *logoutExceptDevice)
		if err != nil {
			return err
		}
		return deleteDevicesTx(ctx, tx, userID, ids)
	})
}

func (db *DB) Deactivate(ctx context.Context, userID string) error {
	return db.tx(ctx, func(tx *Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE users SET deactivated = 1, password_hash = '' WHERE user_id = ?`, userID); err != nil {
			return err
		}
		ids, err := queryStrings(ctx, tx, `SELECT device_id FROM devices WHERE user_id = ?`, userID)
		if err != nil {
			return err
		}
		return deleteDevicesTx(ctx, tx, userID, ids)
	})
}

func (db *DB) CreateDevice(ctx context.Context, d *store.Device, tok store.NewToken) error {
	return db.tx(ctx, func(tx *Tx) error {
		// A login that names an existing device ID takes it over: the old
		// tokens go, the device (and its keys) stay.
		if _, err := tx.ExecContext(ctx, `INSERT INTO devices (user_id, device_id, display_name, created_ts, last_seen_ts, last_seen_ip) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (user_id, device_id) DO UPDATE SET display_name = coalesce(excluded.display_name, devices.display_name), last_seen_ts = excluded.last_seen_ts, last_seen_ip = excluded.last_seen_ip`,
			d.UserID, d.DeviceID, d.DisplayName, d.CreatedTS, d.LastSeenTS, d.LastSeenIP); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM access_tokens WHERE user_id = ? AND device_id = ?`, d.UserID, d.DeviceID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM superseded_refresh_tokens WHERE user_id = ? AND device_id = ?`, d.UserID, d.DeviceID); err != nil {
			return err
		}
		return insertToken(ctx, tx, d.UserID, d.DeviceID, tok, d.CreatedTS)
	})
}

func insertToken(ctx context.Context, tx *Tx, userID, deviceID string, tok store.NewToken, now int64) error {
	var refresh any
	if tok.RefreshHash != nil {
		refresh = tok.RefreshHash
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO access_tokens (token_hash, user_id, device_id, refresh_hash, expires_ts, created_ts) VALUES (?, ?, ?, ?, ?, ?)`,
		tok.AccessHash, userID, deviceID, refresh, tok.ExpiresTS, now)
	if isConstraint(err) {
		return store.ErrConflict
	}
	return err
}

func (db *DB) GetDevice(ctx context.Context, userID, deviceID string) (*store.Device, error) {
	d := store.Device{UserID: userID, DeviceID: deviceID}
	err := db.r.QueryRowContext(ctx, `SELECT display_name, created_ts, last_seen_ts, last_seen_ip FROM devices WHERE user_id = ? AND device_id = ?`, userID, deviceID).
		Scan(&d.DisplayName, &d.CreatedTS, &d.LastSeenTS, &d.LastSeenIP)
	if err != nil {
		return nil, notFound(err)
	}
	return &d, nil
}

func (db *DB) ListDevices(ctx context.Context, userID string) ([]store.Device, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT device_id, display_name, created_ts, last_seen_ts, last_seen_ip FROM devices WHERE user_id = ? ORDER BY device_id`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Device
	for rows.Next() {
		d := store.Device{UserID: userID}
		if err := rows.Scan(&d.DeviceID, &d.DisplayName, &d.CreatedTS, &d.LastSeenTS, &d.LastSeenIP); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

func (db *DB) SetDeviceName(ctx context.Context, userID, deviceID, name string) error {
	res, err := db.w.ExecContext(ctx, `UPDATE devices SET display_name = ? WHERE user_id = ? AND device_id = ?`, name, userID, deviceID)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.ErrNotFound
	}
	return nil
}

func (db *DB) DeleteDevices(ctx context.Context, userID string, deviceIDs []string) error {
	return db.tx(ctx, func(tx *Tx) error { return deleteDevicesTx(ctx, tx, userID, deviceIDs) })
}

func (db *DB) DeleteAllDevices(ctx context.Context, userID string) error {
	return db.tx(ctx, func(tx *Tx) error {
		ids, err := queryStrings(ctx, tx, `SELECT device_id FROM devices WHERE user_id = ?`, userID)
		if err != nil {
			return err
		}
		return deleteDevicesTx(ctx, tx, userID, ids)
	})
}

// deviceCleanups are run for every deleted device inside the deleting
// transaction; other parts of the store (keys, to-device) register theirs.
var deviceCleanups []string

func deleteDevicesTx(ctx context.Context, tx *Tx, userID string, deviceIDs []string) error {
	for _, id := range deviceIDs {
		if _, err := tx.ExecContext(ctx, `DELETE FROM devices WHERE user_id = ? AND device_id = ?`, userID, id); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM access_tokens WHERE user_id = ? AND device_id = ?`, userID, id); err != nil {
			return err
		}
		for _, q := range deviceCleanups {
			if _, err := tx.ExecContext(ctx, q, userID, id); err != nil {
				return err
			}
		}
	}
	return nil
}

func (db *DB) TouchDevice(ctx context.Context, userID, deviceID, ip string, ts int64) error {
	_, err := db.w.ExecContext(ctx, `UPDATE devices SET last_seen_ts = ?, last_seen_ip = ? WHERE user_id = ? AND device_id = ?`, ts, ip, userID, deviceID)
	return err
}

func (db *DB) SessionByToken(ctx context.Context, accessHash []byte) (*store.Session, error) {
	var s store.Session
	err := db.r.QueryRowContext(ctx, `SELECT t.user_id, t.device_id, t.expires_ts, u.is_guest, u.is_admin,
			EXISTS (SELECT 1 FROM superseded_refresh_tokens o WHERE o.successor_hash = t.token_hash)
		FROM access_tokens t JOIN users u ON u.user_id = t.user_id WHERE t.token_hash = ? AND u.deactivated = 0`, accessHash).
		Scan(&s.UserID, &s.DeviceID, &s.ExpiresTS, &s.IsGuest, &s.IsAdmin, &s.RefreshPending)
	if err != nil {
		return nil, notFound(err)
	}
	return &s, nil
}

func (db *DB) RotateRefreshToken(ctx context.Context, refreshHash []byte, tok store.NewToken, now int64) (*store.Session, error) {
	var s store.Session
	err := db.tx(ctx, func(tx *Tx) error {
		var current []byte
		err := tx.QueryRowContext(ctx, `SELECT token_hash, user_id, device_id FROM access_tokens WHERE refresh_hash = ?`, refreshHash).Scan(&current, &s.UserID, &s.DeviceID)
		switch {
		case err == nil:
			// The live pair: the refresh token it replaced (if any) is now
			// revoked, its own access token goes, its refresh token is kept
			// until the new pair is used.
			if _, err := tx.ExecContext(ctx, `DELETE FROM superseded_refresh_tokens WHERE successor_hash = ?`, current); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM access_tokens WHERE token_hash = ?`, current); err != nil {
				return err
			}
		case errors.Is(err, sql.ErrNoRows):
			// A refresh token already exchanged whose successor is unused:
			// the client is retrying; the unused successor is replaced.
			var successor []byte
			err := tx.QueryRowContext(ctx, `SELECT successor_hash, user_id, device_id FROM superseded_refresh_tokens WHERE refresh_hash = ?`, refreshHash).Scan(&successor, &s.UserID, &s.DeviceID)
			if err != nil {
				return notFound(err)
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM access_tokens WHERE token_hash = ?`, successor); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM superseded_refresh_tokens WHERE refresh_hash = ?`, refreshHash); err != nil {
				return err
			}
		default:
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO superseded_refresh_tokens (refresh_hash, successor_hash, user_id, device_id) VALUES (?, ?, ?, ?)`,
			refreshHash, tok.AccessHash, s.UserID, s.DeviceID); err != nil {
			return err
		}
		s.ExpiresTS = tok.ExpiresTS
		return insertToken(ctx, tx, s.UserID, s.DeviceID, tok, now)
	})
	if err != nil {
		return nil, err
	}
	return &s, nil
}

func (db *DB) ConfirmRefresh(ctx context.Context, accessHash []byte) error {
	_, err := db.w.ExecContext(ctx, `DELETE FROM superseded_refresh_tokens WHERE successor_hash = ?`, accessHash)
	return err
}

func (db *DB) DeleteToken(ctx context.Context, accessHash []byte) error {
	_, err := db.w.ExecContext(ctx, `DELETE FROM access_tokens WHERE token_hash = ?`, accessHash)
	return err
}

type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func queryStrings(ctx context.Context, q queryer, query string, args ...any) ([]string, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}
