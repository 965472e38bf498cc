package postgres

import (
	"context"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5"

	"conclave/internal/store"
)

func (db *DB) CreateUser(ctx context.Context, u *store.User) error {
	_, err := db.pool.Exec(ctx, `INSERT INTO users (user_id, user_id_lower, password_hash, is_admin, is_guest, created_ts) VALUES ($1, $2, $3, $4, $5, $6)`,
		u.UserID, strings.ToLower(u.UserID), u.PasswordHash, u.IsAdmin, u.IsGuest, u.CreatedTS)
	if isConstraint(err) {
		return store.ErrConflict
	}
	return err
}

func (db *DB) GetUser(ctx context.Context, userID string) (*store.User, error) {
	u := store.User{UserID: userID}
	err := db.pool.QueryRow(ctx, `SELECT password_hash, is_admin, is_guest, deactivated, created_ts FROM users WHERE user_id = $1`, userID).
		Scan(&u.PasswordHash, &u.IsAdmin, &u.IsGuest, &u.Deactivated, &u.CreatedTS)
	if err != nil {
		return nil, notFound(err)
	}
	return &u, nil
}

func (db *DB) UserIDCaseless(ctx context.Context, userID string) (string, error) {
	var id string
	err := db.pool.QueryRow(ctx, `SELECT user_id FROM users WHERE user_id_lower = $1`, strings.ToLower(userID)).Scan(&id)
	return id, notFound(err)
}

func (db *DB) UserIDTaken(ctx context.Context, userID string) (bool, error) {
	var taken bool
	err := db.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE user_id_lower = $1)`, strings.ToLower(userID)).Scan(&taken)
	return taken, err
}

func (db *DB) SetPassword(ctx context.Context, userID, hash string, logoutExceptDevice *string) error {
	return db.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE users SET password_hash = $1 WHERE user_id = $2`, hash, userID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		if logoutExceptDevice == nil {
			return nil
		}
		ids, err := queryStrings(ctx, tx, `SELECT device_id FROM devices WHERE user_id = $1 AND device_id <> $2`, userID, *logoutExceptDevice)
		if err != nil {
			return err
		}
		return deleteDevicesTx(ctx, tx, userID, ids)
	})
}

func (db *DB) Deactivate(ctx context.Context, userID string) error {
	return db.tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE users SET deactivated = true, password_hash = '' WHERE user_id = $1`, userID); err != nil {
			return err
		}
		ids, err := queryStrings(ctx, tx, `SELECT device_id FROM devices WHERE user_id = $1`, userID)
		if err != nil {
			return err
		}
		return deleteDevicesTx(ctx, tx, userID, ids)
	})
}

func (db *DB) CreateDevice(ctx context.Context, d *store.Device, tok store.NewToken) error {
	return db.tx(ctx, func(tx pgx.Tx) error {
		// A login that names an existing device ID takes it over: the old
		// tokens go, the device (and its keys) stay.
		if _, err := tx.Exec(ctx, `INSERT INTO devices (user_id, device_id, display_name, created_ts, last_seen_ts, last_seen_ip) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (user_id, device_id) DO UPDATE SET display_name = coalesce(excluded.display_name, devices.display_name), last_seen_ts = excluded.last_seen_ts, last_seen_ip = excluded.last_seen_ip`,
			d.UserID, d.DeviceID, d.DisplayName, d.CreatedTS, d.LastSeenTS, d.LastSeenIP); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2`, d.UserID, d.DeviceID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM superseded_refresh_tokens WHERE user_id = $1 AND device_id = $2`, d.UserID, d.DeviceID); err != nil {
			return err
		}
		return insertToken(ctx, tx, d.UserID, d.DeviceID, tok, d.CreatedTS)
	})
}

func insertToken(ctx context.Context, tx pgx.Tx, userID, deviceID string, tok store.NewToken, now int64) error {
	_, err := tx.Exec(ctx, `INSERT INTO access_tokens (token_hash, user_id, device_id, refresh_hash, expires_ts, created_ts) VALUES ($1, $2, $3, $4, $5, $6)`,
		tok.AccessHash, userID, deviceID, tok.RefreshHash, tok.ExpiresTS, now)
	if isConstraint(err) {
		return store.ErrConflict
	}
	return err
}

func (db *DB) GetDevice(ctx context.Context, userID, deviceID string) (*store.Device, error) {
	d := store.Device{UserID: userID, DeviceID: deviceID}
	err := db.pool.QueryRow(ctx, `SELECT display_name, created_ts, last_seen_ts, last_seen_ip FROM devices WHERE user_id = $1 AND device_id = $2`, userID, deviceID).
		Scan(&d.DisplayName, &d.CreatedTS, &d.LastSeenTS, &d.LastSeenIP)
	if err != nil {
		return nil, notFound(err)
	}
	return &d, nil
}

func (db *DB) ListDevices(ctx context.Context, userID string) ([]store.Device, error) {
	rows, err := db.pool.Query(ctx, `SELECT device_id, display_name, created_ts, last_seen_ts, last_seen_ip FROM devices WHERE user_id = $1 ORDER BY device_id COLLATE "C"`, userID)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Device, error) {
		d := store.Device{UserID: userID}
		err := row.Scan(&d.DeviceID, &d.DisplayName, &d.CreatedTS, &d.LastSeenTS, &d.LastSeenIP)
		return d, err
	})
	if len(out) == 0 {
		out = nil
	}
	return out, err
}

func (db *DB) SetDeviceName(ctx context.Context, userID, deviceID, name string) error {
	tag, err := db.pool.Exec(ctx, `UPDATE devices SET display_name = $1 WHERE user_id = $2 AND device_id = $3`, name, userID, deviceID)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return store.ErrNotFound
	}
	return nil
}

func (db *DB) DeleteDevices(ctx context.Context, userID string, deviceIDs []string) error {
	return db.tx(ctx, func(tx pgx.Tx) error { return deleteDevicesTx(ctx, tx, userID, deviceIDs) })
}

func (db *DB) DeleteAllDevices(ctx context.Context, userID string) error {
	return db.tx(ctx, func(tx pgx.Tx) error {
		ids, err := queryStrings(ctx, tx, `SELECT device_id FROM devices WHERE user_id = $1`, userID)
		if err != nil {
			return err
		}
		return deleteDevicesTx(ctx, tx, userID, ids)
	})
}

// deviceCleanups are run for every deleted device inside the deleting
// transaction, with $1 = user ID and $2 = device ID: the PostgreSQL twin of
// the SQLite store's list. Other parts of the store register theirs from an
// init() in their own file.
var deviceCleanups []string

func deleteDevicesTx(ctx context.Context, tx pgx.Tx, userID string, deviceIDs []string) error {
	for _, id := range deviceIDs {
		if _, err := tx.Exec(ctx, `DELETE FROM devices WHERE user_id = $1 AND device_id = $2`, userID, id); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2`, userID, id); err != nil {
			return err
		}
		for _, q := range deviceCleanups {
			if _, err := tx.Exec(ctx, q, userID, id); err != nil {
				return err
			}
		}
	}
	return nil
}

// Refresh tokens kept for a retry belong to their device and go with it.
func init() {
	deviceCleanups = append(deviceCleanups, `DELETE FROM superseded_refresh_tokens WHERE user_id = $1 AND device_id = $2`)
}

func (db *DB) TouchDevice(ctx context.Context, userID, deviceID, ip string, ts int64) error {
	_, err := db.pool.Exec(ctx, `UPDATE devices SET last_seen_ts = $1, last_seen_ip = $2 WHERE user_id = $3 AND device_id = $4`, ts, ip, userID, deviceID)
	return err
}

func (db *DB) SessionByToken(ctx context.Context, accessHash []byte) (*store.Session, error) {
	var s store.Session
	err := db.pool.QueryRow(ctx, `SELECT t.user_id, t.device_id, t.expires_ts, u.is_guest, u.is_admin,
			EXISTS (SELECT 1 FROM superseded_refresh_tokens o WHERE o.successor_hash = t.token_hash)
		FROM access_tokens t JOIN users u ON u.user_id = t.user_id WHERE t.token_hash = $1 AND NOT u.deactivated`, accessHash).
		Scan(&s.UserID, &s.DeviceID, &s.ExpiresTS, &s.IsGuest, &s.IsAdmin, &s.RefreshPending)
	if err != nil {
		return nil, notFound(err)
	}
	return &s, nil
}

func (db *DB) RotateRefreshToken(ctx context.Context, refreshHash []byte, tok store.NewToken, now int64) (*store.Session, error) {
	var s store.Session
	err := db.tx(ctx, func(tx pgx.Tx) error {
		s = store.Session{}
		var current []byte
		// FOR UPDATE: two concurrent refreshes with one token are serialised;
		// the second sees the first's result.
		err := tx.QueryRow(ctx, `SELECT token_hash, user_id, device_id FROM access_tokens WHERE refresh_hash = $1 FOR UPDATE`, refreshHash).Scan(&current, &s.UserID, &s.DeviceID)
		switch {
		case err == nil:
			// The live pair: the refresh token it replaced (if any) is now
			// revoked, its own access token goes, its refresh token is kept
			// until the new pair is used.
			if _, err := tx.Exec(ctx, `DELETE FROM superseded_refresh_tokens WHERE successor_hash = $1`, current); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `DELETE FROM access_tokens WHERE token_hash = $1`, current); err != nil {
				return err
			}
		case errors.Is(err, pgx.ErrNoRows):
			// A refresh token already exchanged whose successor is unused:
			// the client is retrying; the unused successor is replaced.
			var successor []byte
			err := tx.QueryRow(ctx, `SELECT successor_hash, user_id, device_id FROM superseded_refresh_tokens WHERE refresh_hash = $1 FOR UPDATE`, refreshHash).Scan(&successor, &s.UserID, &s.DeviceID)
			if err != nil {
				return notFound(err)
			}
			if _, err := tx.Exec(ctx, `DELETE FROM access_tokens WHERE token_hash = $1`, successor); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `DELETE FROM superseded_refresh_tokens WHERE refresh_hash = $1`, refreshHash); err != nil {
				return err
			}
		default:
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO superseded_refresh_tokens (refresh_hash, successor_hash, user_id, device_id) VALUES ($1, $2, $3, $4)`,
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
	_, err := db.pool.Exec(ctx, `DELETE FROM superseded_refresh_tokens WHERE successor_hash = $1`, accessHash)
	return err
}

func (db *DB) DeleteToken(ctx context.Context, accessHash []byte) error {
	_, err := db.pool.Exec(ctx, `DELETE FROM access_tokens WHERE token_hash = $1`, accessHash)
	return err
}
