package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"

	"conclave/internal/store"
)

// currentBackup returns the user's current (highest live) backup version, 0 if none.
func currentBackup(ctx context.Context, q Querier, userID string) (int64, error) {
	var v *int64
	err := q.QueryRow(ctx, `SELECT max(version) FROM backup_versions WHERE user_id = ? AND deleted = false`, userID).Scan(&v)
	if v == nil {
		return 0, err
	}
	return *v, err
}

func backupInfo(ctx context.Context, q Querier, userID string, version int64) (*store.BackupVersion, error) {
	b := store.BackupVersion{UserID: userID, Version: version}
	var auth []byte
	err := q.QueryRow(ctx, `SELECT algorithm, auth_data, etag, (SELECT count(*) FROM backup_keys k WHERE k.user_id = v.user_id AND k.version = v.version)
		FROM backup_versions v WHERE user_id = ? AND version = ? AND deleted = false`, userID, version).Scan(&b.Algorithm, &auth, &b.Etag, &b.Count)
	if err != nil {
		return nil, notFound(err)
	}
	b.AuthData = auth
	return &b, nil
}

func (s *Shared) CreateBackupVersion(ctx context.Context, userID, algorithm string, authData json.RawMessage) (int64, error) {
	var v int64
	err := s.b.Tx(ctx, func(tx Querier) error {
		if err := s.b.Lock(ctx, tx, LockBackups, userID); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) + 1 FROM backup_versions WHERE user_id = ?`, userID).Scan(&v); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO backup_versions (user_id, version, algorithm, auth_data) VALUES (?, ?, ?, ?)`, userID, v, algorithm, []byte(authData))
		return err
	})
	return v, err
}

func (s *Shared) BackupVersion(ctx context.Context, userID string, version int64) (*store.BackupVersion, error) {
	if version == 0 {
		cur, err := currentBackup(ctx, s.b.Read(), userID)
		if err != nil {
			return nil, err
		}
		if cur == 0 {
			return nil, store.ErrNotFound
		}
		version = cur
	}
	return backupInfo(ctx, s.b.Read(), userID, version)
}

func (s *Shared) UpdateBackupVersion(ctx context.Context, userID string, version int64, authData json.RawMessage) error {
	n, err := s.b.Write().Exec(ctx, `UPDATE backup_versions SET auth_data = ? WHERE user_id = ? AND version = ? AND deleted = false`, []byte(authData), userID, version)
	if err != nil {
		return err
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}

func (s *Shared) DeleteBackupVersion(ctx context.Context, userID string, version int64) error {
	return s.b.Tx(ctx, func(tx Querier) error {
		if err := s.b.Lock(ctx, tx, LockBackups, userID); err != nil {
			return err
		}
		n, err := tx.Exec(ctx, `UPDATE backup_versions SET deleted = true, auth_data = '{}' WHERE user_id = ? AND version = ? AND deleted = false`, userID, version)
		if err != nil {
			return err
		}
		if n == 0 {
			return store.ErrNotFound
		}
		_, err = tx.Exec(ctx, `DELETE FROM backup_keys WHERE user_id = ? AND version = ?`, userID, version)
		return err
	})
}

func (s *Shared) PutRoomKeys(ctx context.Context, userID string, version int64, keys []store.RoomKey, better func(old, new *store.RoomKey) bool) (*store.BackupVersion, error) {
	var info *store.BackupVersion
	err := s.b.Tx(ctx, func(tx Querier) error {
		if err := s.b.Lock(ctx, tx, LockBackups, userID); err != nil {
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
			err := tx.QueryRow(ctx, `SELECT first_message_index, forwarded_count, is_verified, session_data FROM backup_keys WHERE user_id = ? AND version = ? AND room_id = ? AND session_id = ?`,
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
			if _, err := tx.Exec(ctx, `INSERT INTO backup_keys (user_id, version, room_id, session_id, first_message_index, forwarded_count, is_verified, session_data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET first_message_index = excluded.first_message_index, forwarded_count = excluded.forwarded_count, is_verified = excluded.is_verified, session_data = excluded.session_data`,
				userID, version, k.RoomID, k.SessionID, k.FirstMessageIndex, k.ForwardedCount, k.IsVerified, []byte(k.SessionData)); err != nil {
				return err
			}
			changed = true
		}
		if changed {
			if _, err := tx.Exec(ctx, `UPDATE backup_versions SET etag = etag + 1 WHERE user_id = ? AND version = ?`, userID, version); err != nil {
				return err
			}
		}
		info, err = backupInfo(ctx, tx, userID, version)
		return err
	})
	return info, err
}

// roomKeysWhere is the condition selecting a backup's keys, of one room or
// one session when roomID or sessionID is set.
func roomKeysWhere(userID string, version int64, roomID, sessionID string) (string, []any) {
	q := `user_id = ? AND version = ?`
	args := []any{userID, version}
	if roomID != "" {
		q += ` AND room_id = ?`
		args = append(args, roomID)
	}
	if sessionID != "" {
		q += ` AND session_id = ?`
		args = append(args, sessionID)
	}
	return q, args
}

func (s *Shared) RoomKeys(ctx context.Context, userID string, version int64, roomID, sessionID string) ([]store.RoomKey, error) {
	if _, err := backupInfo(ctx, s.b.Read(), userID, version); err != nil {
		return nil, err
	}
	where, args := roomKeysWhere(userID, version, roomID, sessionID)
	rows, err := s.b.Read().Query(ctx, `SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data FROM backup_keys WHERE `+where+
		` ORDER BY room_id`+s.d.Collate+`, session_id`+s.d.Collate, args...)
	return collect(rows, err, func(r Rows, k *store.RoomKey) error {
		var data []byte
		err := r.Scan(&k.RoomID, &k.SessionID, &k.FirstMessageIndex, &k.ForwardedCount, &k.IsVerified, &data)
		k.SessionData = data
		return err
	})
}

func (s *Shared) DeleteRoomKeys(ctx context.Context, userID string, version int64, roomID, sessionID string) (*store.BackupVersion, error) {
	var info *store.BackupVersion
	err := s.b.Tx(ctx, func(tx Querier) error {
		if err := s.b.Lock(ctx, tx, LockBackups, userID); err != nil {
			return err
		}
		if _, err := backupInfo(ctx, tx, userID, version); err != nil {
			return err
		}
		where, args := roomKeysWhere(userID, version, roomID, sessionID)
		n, err := tx.Exec(ctx, `DELETE FROM backup_keys WHERE `+where, args...)
		if err != nil {
			return err
		}
		if n > 0 {
			if _, err := tx.Exec(ctx, `UPDATE backup_versions SET etag = etag + 1 WHERE user_id = ? AND version = ?`, userID, version); err != nil {
				return err
			}
		}
		info, err = backupInfo(ctx, tx, userID, version)
		return err
	})
	return info, err
}
