package postgres

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/jackc/pgx/v5"

	"conclave/internal/store"
)

func (db *DB) ToDeviceMessages(ctx context.Context, userID, deviceID string, ack, after, upto int64, limit int) ([]store.ToDeviceMessage, error) {
	q := `SELECT pos, json FROM to_device WHERE user_id = $1 AND device_id = $2 AND pos > $3 AND pos <= $4 ORDER BY pos LIMIT $5`
	if ack > 0 {
		// The acknowledged messages are deleted in the same statement (one
		// round trip per /sync). Its SELECT reads the rows as they were
		// before the DELETE, so it skips the deleted ones itself.
		q = `WITH d AS (DELETE FROM to_device WHERE user_id = $1 AND device_id = $2 AND pos <= $6)
			SELECT pos, json FROM to_device WHERE user_id = $1 AND device_id = $2 AND pos > greatest($3::bigint, $6::bigint) AND pos <= $4 ORDER BY pos LIMIT $5`
	}
	args := []any{userID, deviceID, after, upto, limit}
	if ack > 0 {
		args = append(args, ack)
	}
	rows, err := db.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.ToDeviceMessage, error) {
		var m store.ToDeviceMessage
		var j []byte
		err := row.Scan(&m.Pos, &j)
		m.JSON = j
		return m, err
	})
	if len(out) == 0 {
		out = nil
	}
	return out, err
}

// currentBackup returns the user's current (highest live) backup version, 0 if none.
func currentBackup(ctx context.Context, q querier, userID string) (int64, error) {
	var v *int64
	err := q.QueryRow(ctx, `SELECT max(version) FROM backup_versions WHERE user_id = $1 AND NOT deleted`, userID).Scan(&v)
	if v == nil {
		return 0, err
	}
	return *v, err
}

func backupInfo(ctx context.Context, q querier, userID string, version int64) (*store.BackupVersion, error) {
	b := store.BackupVersion{UserID: userID, Version: version}
	var auth []byte
	err := q.QueryRow(ctx, `SELECT algorithm, auth_data, etag, (SELECT count(*) FROM backup_keys k WHERE k.user_id = v.user_id AND k.version = v.version)
		FROM backup_versions v WHERE user_id = $1 AND version = $2 AND NOT deleted`, userID, version).Scan(&b.Algorithm, &auth, &b.Etag, &b.Count)
	if err != nil {
		return nil, notFound(err)
	}
	b.AuthData = auth
	return &b, nil
}

// lockBackups serialises the backup writes of one user (version numbering,
// the current-version check of PutRoomKeys).
func lockBackups(ctx context.Context, tx pgx.Tx, userID string) error {
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, backupLockClass, userID)
	return err
}

func (db *DB) CreateBackupVersion(ctx context.Context, userID, algorithm string, authData json.RawMessage) (int64, error) {
	var v int64
	err := db.tx(ctx, func(tx pgx.Tx) error {
		if err := lockBackups(ctx, tx, userID); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) + 1 FROM backup_versions WHERE user_id = $1`, userID).Scan(&v); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO backup_versions (user_id, version, algorithm, auth_data) VALUES ($1, $2, $3, $4)`, userID, v, algorithm, []byte(authData))
		return err
	})
	return v, err
}

func (db *DB) BackupVersion(ctx context.Context, userID string, version int64) (*store.BackupVersion, error) {
	if version == 0 {
		cur, err := currentBackup(ctx, db.pool, userID)
		if err != nil {
			return nil, err
		}
		if cur == 0 {
			return nil, store.ErrNotFound
		}
		version = cur
	}
	return backupInfo(ctx, db.pool, userID, version)
}

func (db *DB) UpdateBackupVersion(ctx context.Context, userID string, version int64, authData json.RawMessage) error {
	tag, err := db.pool.Exec(ctx, `UPDATE backup_versions SET auth_data = $1 WHERE user_id = $2 AND version = $3 AND NOT deleted`, []byte(authData), userID, version)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return store.ErrNotFound
	}
	return nil
}

func (db *DB) DeleteBackupVersion(ctx context.Context, userID string, version int64) error {
	return db.tx(ctx, func(tx pgx.Tx) error {
		if err := lockBackups(ctx, tx, userID); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE backup_versions SET deleted = true, auth_data = '{}' WHERE user_id = $1 AND version = $2 AND NOT deleted`, userID, version)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		_, err = tx.Exec(ctx, `DELETE FROM backup_keys WHERE user_id = $1 AND version = $2`, userID, version)
		return err
	})
}

func (db *DB) PutRoomKeys(ctx context.Context, userID string, version int64, keys []store.RoomKey, better func(old, new *store.RoomKey) bool) (*store.BackupVersion, error) {
	var info *store.BackupVersion
	err := db.tx(ctx, func(tx pgx.Tx) error {
		if err := lockBackups(ctx, tx, userID); err != nil {
			return err
		}
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
			err := tx.QueryRow(ctx, `SELECT first_message_index, forwarded_count, is_verified, session_data FROM backup_keys WHERE user_id = $1 AND version = $2 AND room_id = $3 AND session_id = $4`,
				userID, version, k.RoomID, k.SessionID).Scan(&old.FirstMessageIndex, &old.ForwardedCount, &old.IsVerified, &data)
			switch {
			case errors.Is(err, pgx.ErrNoRows):
			case err != nil:
				return err
			default:
				old.RoomID, old.SessionID, old.SessionData = k.RoomID, k.SessionID, data
				if !better(&old, k) {
					continue
				}
			}
			if _, err := tx.Exec(ctx, `INSERT INTO backup_keys (user_id, version, room_id, session_id, first_message_index, forwarded_count, is_verified, session_data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
				ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET first_message_index = excluded.first_message_index, forwarded_count = excluded.forwarded_count, is_verified = excluded.is_verified, session_data = excluded.session_data`,
				userID, version, k.RoomID, k.SessionID, k.FirstMessageIndex, k.ForwardedCount, k.IsVerified, []byte(k.SessionData)); err != nil {
				return err
			}
			changed = true
		}
		if changed {
			if _, err := tx.Exec(ctx, `UPDATE backup_versions SET etag = etag + 1 WHERE user_id = $1 AND version = $2`, userID, version); err != nil {
				return err
			}
		}
		info, err = backupInfo(ctx, tx, userID, version)
		return err
	})
	return info, err
}

func (db *DB) RoomKeys(ctx context.Context, userID string, version int64, roomID, sessionID string) ([]store.RoomKey, error) {
	if _, err := backupInfo(ctx, db.pool, userID, version); err != nil {
		return nil, err
	}
	var args argList
	q := `SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data FROM backup_keys WHERE user_id = ` + args.add(userID) + ` AND version = ` + args.add(version)
	if roomID != "" {
		q += ` AND room_id = ` + args.add(roomID)
	}
	if sessionID != "" {
		q += ` AND session_id = ` + args.add(sessionID)
	}
	rows, err := db.pool.Query(ctx, q+` ORDER BY room_id COLLATE "C", session_id COLLATE "C"`, args...)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.RoomKey, error) {
		var k store.RoomKey
		var data []byte
		err := row.Scan(&k.RoomID, &k.SessionID, &k.FirstMessageIndex, &k.ForwardedCount, &k.IsVerified, &data)
		k.SessionData = data
		return k, err
	})
	if len(out) == 0 {
		out = nil
	}
	return out, err
}

func (db *DB) DeleteRoomKeys(ctx context.Context, userID string, version int64, roomID, sessionID string) (*store.BackupVersion, error) {
	var info *store.BackupVersion
	err := db.tx(ctx, func(tx pgx.Tx) error {
		if err := lockBackups(ctx, tx, userID); err != nil {
			return err
		}
		if _, err := backupInfo(ctx, tx, userID, version); err != nil {
			return err
		}
		var args argList
		q := `DELETE FROM backup_keys WHERE user_id = ` + args.add(userID) + ` AND version = ` + args.add(version)
		if roomID != "" {
			q += ` AND room_id = ` + args.add(roomID)
		}
		if sessionID != "" {
			q += ` AND session_id = ` + args.add(sessionID)
		}
		tag, err := tx.Exec(ctx, q, args...)
		if err != nil {
			return err
		}
		if tag.RowsAffected() > 0 {
			if _, err := tx.Exec(ctx, `UPDATE backup_versions SET etag = etag + 1 WHERE user_id = $1 AND version = $2`, userID, version); err != nil {
				return err
			}
		}
		info, err = backupInfo(ctx, tx, userID, version)
		return err
	})
	return info, err
}
