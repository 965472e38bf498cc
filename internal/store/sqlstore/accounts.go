package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"strings"

	"conclave/internal/store"
)

func (s *Shared) CreateUser(ctx context.Context, u *store.User) error {
	_, err := s.b.Write().Exec(ctx, `INSERT INTO users (user_id, user_id_lower, password_hash, is_admin, is_guest, created_ts) VALUES (?, ?, ?, ?, ?, ?)`,
		u.UserID, strings.ToLower(u.UserID), u.PasswordHash, u.IsAdmin, u.IsGuest, u.CreatedTS)
	if s.b.IsUnique(err) {
		return store.ErrConflict
	}
	return err
}

func (s *Shared) GetUser(ctx context.Context, userID string) (*store.User, error) {
	u := store.User{UserID: userID}
	err := s.b.Read().QueryRow(ctx, `SELECT password_hash, is_admin, is_guest, deactivated, created_ts FROM users WHERE user_id = ?`, userID).
		Scan(&u.PasswordHash, &u.IsAdmin, &u.IsGuest, &u.Deactivated, &u.CreatedTS)
	if err != nil {
		return nil, notFound(err)
	}
	return &u, nil
}

func (s *Shared) UserIDCaseless(ctx context.Context, userID string) (string, error) {
	var id string
	err := s.b.Read().QueryRow(ctx, `SELECT user_id FROM users WHERE user_id_lower = ?`, strings.ToLower(userID)).Scan(&id)
	return id, notFound(err)
}

func (s *Shared) UserIDTaken(ctx context.Context, userID string) (bool, error) {
	var taken bool
	err := s.b.Read().QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE user_id_lower = ?)`, strings.ToLower(userID)).Scan(&taken)
	return taken, err
}

func (s *Shared) SetPassword(ctx context.Context, userID, hash string, logoutExceptDevice *string) error {
	return s.b.Tx(ctx, func(tx Querier) error {
		n, err := tx.Exec(ctx, `UPDATE users SET password_hash = ? WHERE user_id = ?`, hash, userID)
		if err != nil {
			return err
		}
		if n == 0 {
			return store.ErrNotFound
		}
		if logoutExceptDevice == nil {
			return nil
		}
		ids, err := queryStrings(ctx, tx, `SELECT device_id FROM devices WHERE user_id = ? AND device_id <> ?`, userID, *logoutExceptDevice)
		if err != nil {
			return err
		}
		return deleteDevices(ctx, tx, userID, ids)
	})
}

func (s *Shared) Deactivate(ctx context.Context, userID string) error {
	return s.b.Tx(ctx, func(tx Querier) error {
		if _, err := tx.Exec(ctx, `UPDATE users SET deactivated = true, password_hash = '' WHERE user_id = ?`, userID); err != nil {
			return err
		}
		// Its addresses go with it (Synapse removes them too), so they may
		// register again.
		if _, err := tx.Exec(ctx, `DELETE FROM user_threepids WHERE user_id = ?`, userID); err != nil {
			return err
		}
		ids, err := queryStrings(ctx, tx, `SELECT device_id FROM devices WHERE user_id = ?`, userID)
		if err != nil {
			return err
		}
		return deleteDevices(ctx, tx, userID, ids)
	})
}

func (s *Shared) CreateDevice(ctx context.Context, d *store.Device, tok store.NewToken) error {
	return s.b.Tx(ctx, func(tx Querier) error {
		// A login that names an existing device ID takes it over: the old
		// tokens go, the device (and its keys) stay.
		if _, err := tx.Exec(ctx, `INSERT INTO devices (user_id, device_id, display_name, created_ts, last_seen_ts, last_seen_ip) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (user_id, device_id) DO UPDATE SET display_name = coalesce(excluded.display_name, devices.display_name), last_seen_ts = excluded.last_seen_ts, last_seen_ip = excluded.last_seen_ip`,
			d.UserID, d.DeviceID, d.DisplayName, d.CreatedTS, d.LastSeenTS, d.LastSeenIP); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM access_tokens WHERE user_id = ? AND device_id = ?`, d.UserID, d.DeviceID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM superseded_refresh_tokens WHERE user_id = ? AND device_id = ?`, d.UserID, d.DeviceID); err != nil {
			return err
		}
		return s.insertToken(ctx, tx, d.UserID, d.DeviceID, tok, d.CreatedTS)
	})
}

func (s *Shared) insertToken(ctx context.Context, tx Querier, userID, deviceID string, tok store.NewToken, now int64) error {
	var refresh any // NULL, not an empty blob, when there is none
	if tok.RefreshHash != nil {
		refresh = tok.RefreshHash
	}
	_, err := tx.Exec(ctx, `INSERT INTO access_tokens (token_hash, user_id, device_id, refresh_hash, expires_ts, created_ts) VALUES (?, ?, ?, ?, ?, ?)`,
		tok.AccessHash, userID, deviceID, refresh, tok.ExpiresTS, now)
	if s.b.IsUnique(err) {
		return store.ErrConflict
	}
	return err
}

func (s *Shared) GetDevice(ctx context.Context, userID, deviceID string) (*store.Device, error) {
	d := store.Device{UserID: userID, DeviceID: deviceID}
	err := s.b.Read().QueryRow(ctx, `SELECT display_name, created_ts, last_seen_ts, last_seen_ip FROM devices WHERE user_id = ? AND device_id = ?`, userID, deviceID).
		Scan(&d.DisplayName, &d.CreatedTS, &d.LastSeenTS, &d.LastSeenIP)
	if err != nil {
		return nil, notFound(err)
	}
	return &d, nil
}

func (s *Shared) ListDevices(ctx context.Context, userID string) ([]store.Device, error) {
	rows, err := s.b.Read().Query(ctx, `SELECT device_id, display_name, created_ts, last_seen_ts, last_seen_ip FROM devices WHERE user_id = ? ORDER BY device_id`+s.d.Collate, userID)
	return collect(rows, err, func(r Rows, d *store.Device) error {
		d.UserID = userID
		return r.Scan(&d.DeviceID, &d.DisplayName, &d.CreatedTS, &d.LastSeenTS, &d.LastSeenIP)
	})
}

func (s *Shared) SetDeviceName(ctx context.Context, userID, deviceID, name string) error {
	n, err := s.b.Write().Exec(ctx, `UPDATE devices SET display_name = ? WHERE user_id = ? AND device_id = ?`, name, userID, deviceID)
	if err != nil {
		return err
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}

func (s *Shared) DeleteDevices(ctx context.Context, userID string, deviceIDs []string) error {
	return s.b.Tx(ctx, func(tx Querier) error { return deleteDevices(ctx, tx, userID, deviceIDs) })
}

func (s *Shared) DeleteAllDevices(ctx context.Context, userID string) error {
	return s.b.Tx(ctx, func(tx Querier) error {
		ids, err := queryStrings(ctx, tx, `SELECT device_id FROM devices WHERE user_id = ?`, userID)
		if err != nil {
			return err
		}
		return deleteDevices(ctx, tx, userID, ids)
	})
}

// deviceCleanups run for every deleted device inside the deleting
// transaction (? = user ID, ? = device ID): what belongs to a device goes
// with it.
var deviceCleanups = []string{
	`DELETE FROM access_tokens WHERE user_id = ? AND device_id = ?`,
	// Refresh tokens kept for a retry.
	`DELETE FROM superseded_refresh_tokens WHERE user_id = ? AND device_id = ?`,
	// Keys, pending to-device messages, sent transaction IDs, the
	// signatures over the device, a dehydrated device's record.
	`DELETE FROM device_keys WHERE user_id = ? AND device_id = ?`,
	`DELETE FROM one_time_keys WHERE user_id = ? AND device_id = ?`,
	`DELETE FROM fallback_keys WHERE user_id = ? AND device_id = ?`,
	`DELETE FROM to_device WHERE user_id = ? AND device_id = ?`,
	`DELETE FROM to_device_txns WHERE user_id = ? AND device_id = ?`,
	`DELETE FROM key_signatures WHERE target_user_id = ? AND target_key_id = ?`,
	`DELETE FROM dehydrated_devices WHERE user_id = ? AND device_id = ?`,
	// Pushers (spec: pushers belong to the access token that created them;
	// here the device is the token's owner).
	`DELETE FROM pushers WHERE user_id = ? AND device_id = ?`,
	// Sliding sync connections (rooms first).
	`DELETE FROM sliding_sync_rooms WHERE conn IN (SELECT id FROM sliding_sync_connections WHERE user_id = ? AND device_id = ?)`,
	`DELETE FROM sliding_sync_connections WHERE user_id = ? AND device_id = ?`,
}

func deleteDevices(ctx context.Context, tx Querier, userID string, deviceIDs []string) error {
	for _, id := range deviceIDs {
		if _, err := tx.Exec(ctx, `DELETE FROM devices WHERE user_id = ? AND device_id = ?`, userID, id); err != nil {
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

func (s *Shared) TouchDevices(ctx context.Context, seen []store.DeviceSeen) error {
	if len(seen) == 0 {
		return nil
	}
	return s.b.Tx(ctx, func(tx Querier) error {
		for _, d := range seen {
			// Never backwards: sightings of one device from two processes
			// may be written out of order.
			if _, err := tx.Exec(ctx, `UPDATE devices SET last_seen_ts = ?, last_seen_ip = ? WHERE user_id = ? AND device_id = ? AND last_seen_ts <= ?`,
				d.TS, d.IP, d.UserID, d.DeviceID, d.TS); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *Shared) SessionByToken(ctx context.Context, accessHash []byte) (*store.Session, error) {
	var ss store.Session
	err := s.b.Read().QueryRow(ctx, `SELECT t.user_id, t.device_id, t.expires_ts, u.is_guest, u.is_admin,
			EXISTS (SELECT 1 FROM superseded_refresh_tokens o WHERE o.successor_hash = t.token_hash)
		FROM access_tokens t JOIN users u ON u.user_id = t.user_id WHERE t.token_hash = ? AND NOT u.deactivated`, accessHash).
		Scan(&ss.UserID, &ss.DeviceID, &ss.ExpiresTS, &ss.IsGuest, &ss.IsAdmin, &ss.RefreshPending)
	if err != nil {
		return nil, notFound(err)
	}
	return &ss, nil
}

func (s *Shared) RotateRefreshToken(ctx context.Context, refreshHash []byte, tok store.NewToken, now int64) (*store.Session, error) {
	var ss store.Session
	err := s.b.Tx(ctx, func(tx Querier) error {
		ss = store.Session{}
		var current []byte
		// ForUpdate: two concurrent refreshes with one token are serialised;
		// the second sees the first's result.
		err := tx.QueryRow(ctx, `SELECT token_hash, user_id, device_id FROM access_tokens WHERE refresh_hash = ?`+s.d.ForUpdate, refreshHash).Scan(&current, &ss.UserID, &ss.DeviceID)
		switch {
		case err == nil:
			// The live pair: the refresh token it replaced (if any) is now
			// revoked, its own access token goes, its refresh token is kept
			// until the new pair is used.
			if _, err := tx.Exec(ctx, `DELETE FROM superseded_refresh_tokens WHERE successor_hash = ?`, current); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `DELETE FROM access_tokens WHERE token_hash = ?`, current); err != nil {
				return err
			}
		case errors.Is(err, sql.ErrNoRows):
			// A refresh token already exchanged whose successor is unused:
			// the client is retrying; the unused successor is replaced.
			var successor []byte
			err := tx.QueryRow(ctx, `SELECT successor_hash, user_id, device_id FROM superseded_refresh_tokens WHERE refresh_hash = ?`+s.d.ForUpdate, refreshHash).Scan(&successor, &ss.UserID, &ss.DeviceID)
			if err != nil {
				return notFound(err)
			}
			if _, err := tx.Exec(ctx, `DELETE FROM access_tokens WHERE token_hash = ?`, successor); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `DELETE FROM superseded_refresh_tokens WHERE refresh_hash = ?`, refreshHash); err != nil {
				return err
			}
		default:
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO superseded_refresh_tokens (refresh_hash, successor_hash, user_id, device_id) VALUES (?, ?, ?, ?)`,
			refreshHash, tok.AccessHash, ss.UserID, ss.DeviceID); err != nil {
			return err
		}
		ss.ExpiresTS = tok.ExpiresTS
		return s.insertToken(ctx, tx, ss.UserID, ss.DeviceID, tok, now)
	})
	if err != nil {
		return nil, err
	}
	return &ss, nil
}

func (s *Shared) ConfirmRefresh(ctx context.Context, accessHash []byte) error {
	_, err := s.b.Write().Exec(ctx, `DELETE FROM superseded_refresh_tokens WHERE successor_hash = ?`, accessHash)
	return err
}

func (s *Shared) DeleteToken(ctx context.Context, accessHash []byte) error {
	_, err := s.b.Write().Exec(ctx, `DELETE FROM access_tokens WHERE token_hash = ?`, accessHash)
	return err
}
