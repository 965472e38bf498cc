package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"

	"conclave/internal/store"
)

type rowQueryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (db *DB) ToDeviceMessages(ctx context.Context, userID, deviceID string, ack, after, upto int64, limit int) ([]store.ToDeviceMessage, error) {
	if ack > 0 {
		var pending bool
		if err := db.r.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM to_device WHERE user_id = ? AND device_id = ? AND pos <= ?)`, userID, deviceID, ack).Scan(&pending); err != nil {
			return nil, err
		}
		if pending {
			if _, err := db.w.ExecContext(ctx, `DELETE FROM to_device WHERE user_id = ? AND device_id = ? AND pos <= ?`, userID, deviceID, ack); err != nil {
				return nil, err
			}
		}
	}
	rows, err := db.r.QueryContext(ctx, `SELECT pos, json FROM to_device WHERE user_id = ? AND device_id = ? AND pos > ? AND pos <= ? ORDER BY pos LIMIT ?`, userID, deviceID, after, upto, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.ToDeviceMessage
	for rows.Next() {
		var m store.ToDeviceMessage
		var j []byte
		if err := rows.Scan(&m.Pos, &j); err != nil {
			return nil, err
		}
		m.JSON = j
		out = append(out, m)
	}
	return out, rows.Err()
}

// currentBackup returns the user's current (highest live) backup version, 0 if none.
func currentBackup(ctx context.Context, q rowQueryer, userID string) (int64, error) {
	var v sql.NullInt64
	err := q.QueryRowContext(ctx, `SELECT max(version) FROM backup_versions WHERE user_id = ? AND deleted = 0`, userID).Scan(&v)
	return v.Int64, err
}

func backupInfo(ctx context.Context, q rowQueryer, userID string, version int64) (*store.BackupVersion, error) {
	b := store.BackupVersion{UserID: userID, Version: version}
	var auth []byte
	err := q.QueryRowContext(ctx, `SELECT algorithm, auth_data, etag, (SELECT count(*) FROM backup_keys k WHERE k.user_id = v.user_id AND k.version = v.version)
		FROM backup_versions v WHERE user_id = ? AND version = ? AND deleted = 0`, userID, version).Scan(&b.Algorithm, &auth, &b.Etag, &b.Count)
	if err != nil {
		return nil, notFound(err)
	}
	b.AuthData = auth
	return &b, nil
}

func (db *DB) CreateBackupVersion(ctx context.Context, userID, algorithm string, authData json.RawMessage) (int64, error) {
	var v int64
	err := db.tx(ctx, func(tx *Tx) error {
		if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) + 1 FROM backup_versions WHERE user_id = ?`, userID).Scan(&v); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO backup_versions (user_id, version, algorithm, auth_data) VALUES (?, ?, ?, ?)`, userID, v, algorithm, []byte(authData))
		return err
	})
	return v, err
}

func (db *DB) BackupVersion(ctx context.Context, userID string, version int64) (*store.BackupVersion, error) {
	if version == 0 {
		cur, err := currentBackup(ctx, db.r, userID)
		if err != nil {
			return nil, err
		}
		if cur == 0 {
			return nil, store.ErrNotFound
		}
		version = cur
	}
	return backupInfo(ctx, db.r, userID, version)
}

func (db *DB) UpdateBackupVersion(ctx context.Context, userID string, version int64, authData json.RawMessage) error {
	res, err := db.w.ExecContext(ctx, `UPDATE backup_versions SET auth_data = ? WHERE user_id = ? AND version = ? AND deleted = 0`, []byte(authData), userID, version)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.ErrNotFound
	}
	return nil
}

func (db *DB) DeleteBackupVersion(ctx context.Context, userID string, version int64) error {
	return db.tx(ctx, func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE backup_versions SET deleted = 1, auth_data = '{}' WHERE user_id = ? AND version = ? AND deleted = 0`, userID, version)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return store.ErrNotFound
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM backup_keys WHERE user_id = ? AND version = ?`, userID, version)
		return err
	})
}

func (db *DB) PutRoomKeys(ctx context.Context, userID string, version int64, keys []store.RoomKey, better func(old, new *store.RoomKey) bool) (*store.BackupVersion, error) {
	var info *store.BackupVersion
	err := db.tx(ctx, func(tx *Tx) error {
		cur, err := currentBackup(ctx, tx, userID)
		if err != nil {
			return err
		}
		if cur == 0 {
			return store.ErrNotFound
		}
		if cur != version {
			return store.ErrWrongBackupVersion
		}
		changed := false
		for i := range keys {
			k := &keys[i]
			var old store.RoomKey
			var data []byte
			err := tx.QueryRowContext(ctx, `SELECT first_message_index, forwarded_count, is_verified, session_data FROM backup_keys WHERE user_id = ? AND version = ? AND room_id = ? AND session_id = ?`,
				userID, version, k.RoomID, k.SessionID).Scan(&old.FirstMessageIndex, &old.ForwardedCount, &old.IsVerified, &data)
			switch {
			case errors.Is(err, sql.ErrNoRows):
			case err != nil:
				return err
			default:
				old.RoomID, old.SessionID, old.SessionData = k.RoomID, k.SessionID, data
				if !better(&old, k) {
					continue
				}
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO backup_keys (user_id, version, room_id, session_id, first_message_index, forwarded_count, is_verified, session_data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET first_message_index = excluded.first_message_index, forwarded_count = excluded.forwarded_count, is_verified = excluded.is_verified, session_data = excluded.session_data`,
				userID, version, k.RoomID, k.SessionID, k.FirstMessageIndex, k.ForwardedCount, boolInt(k.IsVerified), []byte(k.SessionData)); err != nil {
				return err
			}
			changed = true
		}
		if changed {
			if _, err := tx.ExecContext(ctx, `UPDATE backup_versions SET etag = etag + 1 WHERE user_id = ? AND version = ?`, userID, version); err != nil {
				return err
			}
		}
		info, err = backupInfo(ctx, tx, userID, version)
		return err
	})
	return info, err
}

func (db *DB) RoomKeys(ctx context.Context, userID string, version int64, roomID, sessionID string) ([]store.RoomKey, error) {
	if _, err := backupInfo(ctx, db.r, userID, version); err != nil {
		return nil, err
	}
	q := `SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data FROM backup_keys WHERE user_id = ? AND version = ?`
	args := []any{userID, version}
	if roomID != "" {
		q += ` AND room_id = ?`
		args = append(args, roomID)
	}
	if sessionID != "" {
		q += ` AND session_id = ?`
		args = append(args, sessionID)
	}
	rows, err := db.r.QueryContext(ctx, q+` ORDER BY room_id, session_id`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.RoomKey
	for rows.Next() {
		var k store.RoomKey
		var data []byte
		if err := rows.Scan(&k.RoomID, &k.SessionID, &k.FirstMessageIndex, &k.ForwardedCount, &k.IsVerified, &data); err != nil {
			return nil, err
		}
		k.SessionData = data
		out = append(out, k)
	}
	return out, rows.Err()
}

func (db *DB) DeleteRoomKeys(ctx context.Context, userID string, version int64, roomID, sessionID string) (*store.BackupVersion, error) {
	var info *store.BackupVersion
	err := db.tx(ctx, func(tx *Tx) error {
		if _, err := backupInfo(ctx, tx, userID, version); err != nil {
			return err
		}
		q := `DELETE FROM backup_keys WHERE user_id = ? AND version = ?`
		args := []any{userID, version}
		if roomID != "" {
			q += ` AND room_id = ?`
			args = append(args, roomID)
		}
		if sessionID != "" {
			q += ` AND session_id = ?`
			args = append(args, sessionID)
		}
		res, err := tx.ExecContext(ctx, q, args...)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n > 0 {
			if _, err := tx.ExecContext(ctx, `UPDATE backup_versions SET etag = etag + 1 WHERE user_id = ? AND version = ?`, userID, version); err != nil {
				return err
			}
		}
		info, err = backupInfo(ctx, tx, userID, version)
		return err
	})
	return info, err
}
