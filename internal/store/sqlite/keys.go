package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"sort"

	"conclave/internal/store"
)

func init() {
	// A deleted device takes its keys, pending to-device messages, sent
	// transaction IDs and the signatures over it along.
	deviceCleanups = append(deviceCleanups,
		`DELETE FROM device_keys WHERE user_id = ? AND device_id = ?`,
		`DELETE FROM one_time_keys WHERE user_id = ? AND device_id = ?`,
		`DELETE FROM fallback_keys WHERE user_id = ? AND device_id = ?`,
		`DELETE FROM to_device WHERE user_id = ? AND device_id = ?`,
		`DELETE FROM to_device_txns WHERE user_id = ? AND device_id = ?`,
		`DELETE FROM key_signatures WHERE target_user_id = ? AND target_key_id = ?`,
		`DELETE FROM dehydrated_devices WHERE user_id = ? AND device_id = ?`,
	)
}

// deviceListChanged records a device list change for each user at fresh positions.
func deviceListChanged(ctx context.Context, tx *Tx, userIDs ...string) error {
	if len(userIDs) == 0 {
		return nil
	}
	pos, err := nextPos(ctx, tx, len(userIDs))
	if err != nil {
		return err
	}
	for i, u := range userIDs {
		if _, err := tx.ExecContext(ctx, `INSERT INTO device_list_changes (user_id, pos) VALUES (?, ?)`, u, pos+int64(i)); err != nil {
			return err
		}
	}
	return nil
}

func (db *DB) UploadKeys(ctx context.Context, u *store.KeyUpload) (map[string]int, bool, error) {
	var counts map[string]int
	changed := false
	err := db.tx(ctx, func(tx *Tx) error {
		var err error
		counts, changed, err = uploadKeysTx(ctx, tx, u)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return counts, changed, nil
}

func uploadKeysTx(ctx context.Context, tx *Tx, u *store.KeyUpload) (map[string]int, bool, error) {
	changed := false
	err := func() error {
		if dk := u.DeviceKeys; dk != nil {
			var oldJSON []byte
			var oldEd, oldCurve string
			err := tx.QueryRowContext(ctx, `SELECT key_json, ed25519, curve25519 FROM device_keys WHERE user_id = ? AND device_id = ?`, u.UserID, u.DeviceID).Scan(&oldJSON, &oldEd, &oldCurve)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				changed = true
			case err != nil:
				return err
			case oldEd != dk.Ed25519 || oldCurve != dk.Curve25519:
				return store.ErrIdentityKeysChanged
			default:
				changed = !bytes.Equal(oldJSON, dk.JSON)
			}
			if changed {
				if _, err := tx.ExecContext(ctx, `INSERT INTO device_keys (user_id, device_id, key_json, ed25519, curve25519) VALUES (?, ?, ?, ?, ?)
					ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = excluded.key_json`, u.UserID, u.DeviceID, []byte(dk.JSON), dk.Ed25519, dk.Curve25519); err != nil {
					return err
				}
				if err := deviceListChanged(ctx, tx, u.UserID); err != nil {
					return err
				}
			}
		}
		for _, k := range u.OneTimeKeys {
			res, err := tx.ExecContext(ctx, `INSERT INTO one_time_keys (user_id, device_id, algorithm, key_id, key_json) VALUES (?, ?, ?, ?, ?)
				ON CONFLICT (user_id, device_id, key_id) DO NOTHING`, u.UserID, u.DeviceID, k.Algorithm, k.KeyID, []byte(k.JSON))
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 1 {
				continue
			}
			var old []byte
			if err := tx.QueryRowContext(ctx, `SELECT key_json FROM one_time_keys WHERE user_id = ? AND device_id = ? AND key_id = ?`, u.UserID, u.DeviceID, k.KeyID).Scan(&old); err != nil {
				return err
			}
			if !bytes.Equal(old, k.JSON) {
				return store.ErrConflict
			}
		}
		for _, k := range u.FallbackKeys {
			var oldID string
			var old []byte
			err := tx.QueryRowContext(ctx, `SELECT key_id, key_json FROM fallback_keys WHERE user_id = ? AND device_id = ? AND algorithm = ?`, u.UserID, u.DeviceID, k.Algorithm).Scan(&oldID, &old)
			if err == nil && oldID == k.KeyID && bytes.Equal(old, k.JSON) {
				continue // same key again: keeps its used flag
			}
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO fallback_keys (user_id, device_id, algorithm, key_id, key_json, used) VALUES (?, ?, ?, ?, ?, 0)
				ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET key_id = excluded.key_id, key_json = excluded.key_json, used = 0`,
				u.UserID, u.DeviceID, k.Algorithm, k.KeyID, []byte(k.JSON)); err != nil {
				return err
			}
		}
		return nil
	}()
	if err != nil {
		return nil, false, err
	}
	counts, err := otkCounts(ctx, tx, u.UserID, u.DeviceID)
	return counts, changed, err
}

func (db *DB) PutDehydratedDevice(ctx context.Context, userID, deviceID string, displayName *string, data json.RawMessage, keys *store.KeyUpload, now int64, tokenHash []byte) error {
	return db.tx(ctx, func(tx *Tx) error {
		var old string
		err := tx.QueryRowContext(ctx, `SELECT device_id FROM dehydrated_devices WHERE user_id = ?`, userID).Scan(&old)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if old != "" {
			if err := deleteDevicesTx(ctx, tx, userID, []string{old}); err != nil {
				return err
			}
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM devices WHERE user_id = ? AND device_id = ?`, userID, deviceID).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return store.ErrConflict
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO devices (user_id, device_id, display_name, created_ts) VALUES (?, ?, ?, ?)`, userID, deviceID, displayName, now); err != nil {
			return err
		}
		if err := insertToken(ctx, tx, userID, deviceID, store.NewToken{AccessHash: tokenHash}, now); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO dehydrated_devices (user_id, device_id, device_data) VALUES (?, ?, ?)
			ON CONFLICT (user_id) DO UPDATE SET device_id = excluded.device_id, device_data = excluded.device_data`, userID, deviceID, []byte(data)); err != nil {
			return err
		}
		_, _, err = uploadKeysTx(ctx, tx, keys)
		return err
	})
}

func (db *DB) DehydratedDevice(ctx context.Context, userID string) (string, json.RawMessage, error) {
	var id string
	var data []byte
	err := db.r.QueryRowContext(ctx, `SELECT device_id, device_data FROM dehydrated_devices WHERE user_id = ?`, userID).Scan(&id, &data)
	if err != nil {
		return "", nil, notFound(err)
	}
	return id, data, nil
}

func (db *DB) DeleteDehydratedDevice(ctx context.Context, userID string) (string, error) {
	var id string
	err := db.tx(ctx, func(tx *Tx) error {
		if err := tx.QueryRowContext(ctx, `SELECT device_id FROM dehydrated_devices WHERE user_id = ?`, userID).Scan(&id); err != nil {
			return notFound(err)
		}
		return deleteDevicesTx(ctx, tx, userID, []string{id})
	})
	return id, err
}

type rowQueryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func otkCounts(ctx context.Context, q rowQueryer, userID, deviceID string) (map[string]int, error) {
	rows, err := q.QueryContext(ctx, `SELECT algorithm, count(*) FROM one_time_keys WHERE user_id = ? AND device_id = ? GROUP BY algorithm`, userID, deviceID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var alg string
		var n int
		if err := rows.Scan(&alg, &n); err != nil {
			return nil, err
		}
		out[alg] = n
	}
	return out, rows.Err()
}

func (db *DB) OneTimeKeyCounts(ctx context.Context, userID, deviceID string) (map[string]int, error) {
	return otkCounts(ctx, db.r, userID, deviceID)
}

func (db *DB) UnusedFallbackKeyAlgorithms(ctx context.Context, userID, deviceID string) ([]string, error) {
	return queryStrings(ctx, db.r, `SELECT algorithm FROM fallback_keys WHERE user_id = ? AND device_id = ? AND used = 0 ORDER BY algorithm`, userID, deviceID)
}

func (db *DB) DeviceKeys(ctx context.Context, userID string, deviceIDs []string) ([]store.DeviceKeys, error) {
	q := `SELECT k.device_id, k.key_json, k.ed25519, k.curve25519, d.display_name FROM device_keys k
		LEFT JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id WHERE k.user_id = ?`
	args := []any{userID}
	if len(deviceIDs) > 0 {
		q += ` AND k.device_id IN (` + placeholders(len(deviceIDs)) + `)`
		args = append(args, stringArgs(deviceIDs)...)
	}
	rows, err := db.r.QueryContext(ctx, q+` ORDER BY k.device_id`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.DeviceKeys
	for rows.Next() {
		k := store.DeviceKeys{UserID: userID}
		var j []byte
		if err := rows.Scan(&k.DeviceID, &j, &k.Ed25519, &k.Curve25519, &k.DisplayName); err != nil {
			return nil, err
		}
		k.JSON = j
		out = append(out, k)
	}
	return out, rows.Err()
}

func (db *DB) ClaimKeys(ctx context.Context, reqs []store.ClaimRequest) ([]store.ClaimedKey, error) {
	var out []store.ClaimedKey
	err := db.tx(ctx, func(tx *Tx) error {
		out = out[:0]
		for _, r := range reqs {
			var id string
			var j []byte
			// One statement finds and removes the oldest key: with the single
			// writer connection no other claim can see it afterwards.
			err := tx.QueryRowContext(ctx, `DELETE FROM one_time_keys WHERE seq = (SELECT seq FROM one_time_keys WHERE user_id = ? AND device_id = ? AND algorithm = ? ORDER BY seq LIMIT 1) RETURNING key_id, key_json`,
				r.UserID, r.DeviceID, r.Algorithm).Scan(&id, &j)
			if errors.Is(err, sql.ErrNoRows) {
				err = tx.QueryRowContext(ctx, `UPDATE fallback_keys SET used = 1 WHERE user_id = ? AND device_id = ? AND algorithm = ? RETURNING key_id, key_json`,
					r.UserID, r.DeviceID, r.Algorithm).Scan(&id, &j)
				if errors.Is(err, sql.ErrNoRows) {
					continue
				}
			}
			if err != nil {
				return err
			}
			out = append(out, store.ClaimedKey{UserID: r.UserID, DeviceID: r.DeviceID, Key: store.OneTimeKey{KeyID: id, Algorithm: r.Algorithm, JSON: j}})
		}
		return nil
	})
	return out, err
}

func (db *DB) CrossSigningKeys(ctx context.Context, userID string) (map[string]store.CrossSigningKey, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT key_type, pubkey, key_json FROM cross_signing_keys WHERE user_id = ?`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]store.CrossSigningKey{}
	for rows.Next() {
		k := store.CrossSigningKey{UserID: userID}
		var j []byte
		if err := rows.Scan(&k.Type, &k.PubKey, &j); err != nil {
			return nil, err
		}
		k.JSON = j
		out[k.Type] = k
	}
	return out, rows.Err()
}

func (db *DB) PutCrossSigningKeys(ctx context.Context, userID string, keys []store.CrossSigningKey) error {
	return db.tx(ctx, func(tx *Tx) error {
		for _, k := range keys {
			var old string
			err := tx.QueryRowContext(ctx, `SELECT pubkey FROM cross_signing_keys WHERE user_id = ? AND key_type = ?`, userID, k.Type).Scan(&old)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			if err == nil && old != k.PubKey {
				// Signatures by or over the replaced key mean nothing any more.
				if _, err := tx.ExecContext(ctx, `DELETE FROM key_signatures WHERE signer_user_id = ? AND signer_key_id = ?`, userID, "ed25519:"+old); err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, `DELETE FROM key_signatures WHERE target_user_id = ? AND target_key_id = ?`, userID, old); err != nil {
					return err
				}
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO cross_signing_keys (user_id, key_type, pubkey, key_json) VALUES (?, ?, ?, ?)
				ON CONFLICT (user_id, key_type) DO UPDATE SET pubkey = excluded.pubkey, key_json = excluded.key_json`, userID, k.Type, k.PubKey, []byte(k.JSON)); err != nil {
				return err
			}
		}
		return deviceListChanged(ctx, tx, userID)
	})
}

func (db *DB) PutKeySignatures(ctx context.Context, sigs []store.KeySignature, changedUsers []string) error {
	return db.tx(ctx, func(tx *Tx) error {
		for _, s := range sigs {
			if _, err := tx.ExecContext(ctx, `INSERT INTO key_signatures (target_user_id, target_key_id, signer_user_id, signer_key_id, signature) VALUES (?, ?, ?, ?, ?)
				ON CONFLICT (target_user_id, target_key_id, signer_user_id, signer_key_id) DO UPDATE SET signature = excluded.signature`,
				s.TargetUserID, s.TargetKeyID, s.SignerUserID, s.SignerKeyID, s.Signature); err != nil {
				return err
			}
		}
		return deviceListChanged(ctx, tx, changedUsers...)
	})
}

func (db *DB) KeySignatures(ctx context.Context, targetUserID string) ([]store.KeySignature, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT target_key_id, signer_user_id, signer_key_id, signature FROM key_signatures WHERE target_user_id = ? ORDER BY target_key_id, signer_user_id, signer_key_id`, targetUserID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.KeySignature
	for rows.Next() {
		s := store.KeySignature{TargetUserID: targetUserID}
		if err := rows.Scan(&s.TargetKeyID, &s.SignerUserID, &s.SignerKeyID, &s.Signature); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// sharedWith selects the users sharing a joined room with ?1.
const sharedWith = `SELECT m2.user_id FROM memberships m1 JOIN memberships m2 ON m2.room_id = m1.room_id
	WHERE m1.user_id = ?1 AND m1.membership = 'join' AND m2.membership = 'join'`

func (db *DB) DeviceListChanges(ctx context.Context, userID string, from, to int64) ([]string, []string, error) {
	// Fast path, taken by almost every incremental /sync: with no device
	// list or membership change anywhere in (from, to], nothing below can
	// match, and the self-joins are skipped.
	var any bool
	if err := db.r.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM device_list_changes WHERE pos > ?1 AND pos <= ?2)
		OR EXISTS (SELECT 1 FROM memberships WHERE pos > ?1 AND pos <= ?2)`, from, to).Scan(&any); err != nil {
		return nil, nil, err
	}
	if !any {
		return nil, nil, nil
	}
	changed, err := queryStrings(ctx, db.r, `
		SELECT user_id FROM device_list_changes WHERE pos > ?2 AND pos <= ?3 AND (user_id = ?1 OR user_id IN (`+sharedWith+`))
		UNION
		SELECT m2.user_id FROM memberships m1 JOIN memberships m2 ON m2.room_id = m1.room_id
		WHERE m1.user_id = ?1 AND m1.membership = 'join' AND m2.membership = 'join' AND m2.user_id <> ?1
		  AND ((m2.pos > ?2 AND m2.pos <= ?3) OR (m1.pos > ?2 AND m1.pos <= ?3))`, userID, from, to)
	if err != nil {
		return nil, nil, err
	}
	left, err := queryStrings(ctx, db.r, `
		SELECT DISTINCT m2.user_id FROM memberships m1 JOIN memberships m2 ON m2.room_id = m1.room_id
		WHERE m1.user_id = ?1 AND m2.user_id <> ?1
		  AND ((m1.membership = 'join' AND m2.membership IN ('leave', 'ban') AND m2.pos > ?2 AND m2.pos <= ?3)
		    OR (m1.membership IN ('leave', 'ban') AND m1.pos > ?2 AND m1.pos <= ?3 AND m2.membership = 'join'))
		  AND m2.user_id NOT IN (`+sharedWith+`)`, userID, from, to)
	if err != nil {
		return nil, nil, err
	}
	sort.Strings(changed)
	sort.Strings(left)
	return changed, left, nil
}

func (db *DB) SendToDevice(ctx context.Context, sender, senderDevice, txnID string, msgs []store.ToDeviceSend) ([]string, bool, error) {
	var recipients []string
	dup := false
	err := db.tx(ctx, func(tx *Tx) error {
		recipients, dup = nil, false
		res, err := tx.ExecContext(ctx, `INSERT INTO to_device_txns (user_id, device_id, txn_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`, sender, senderDevice, txnID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			dup = true
			return nil
		}
		type row struct {
			user, device string
			j            json.RawMessage
		}
		var rows []row
		seen := map[string]bool{}
		for _, m := range msgs {
			var devs []string
			if m.DeviceID == "*" {
				if devs, err = queryStrings(ctx, tx, `SELECT device_id FROM devices WHERE user_id = ? ORDER BY device_id`, m.UserID); err != nil {
					return err
				}
			} else {
				// Messages for unknown devices are dropped, as Synapse does.
				if devs, err = queryStrings(ctx, tx, `SELECT device_id FROM devices WHERE user_id = ? AND device_id = ?`, m.UserID, m.DeviceID); err != nil {
					return err
				}
			}
			for _, d := range devs {
				rows = append(rows, row{m.UserID, d, m.JSON})
			}
			if len(devs) > 0 && !seen[m.UserID] {
				seen[m.UserID] = true
				recipients = append(recipients, m.UserID)
			}
		}
		if len(rows) == 0 {
			return nil
		}
		pos, err := nextPos(ctx, tx, len(rows))
		if err != nil {
			return err
		}
		for i, r := range rows {
			if _, err := tx.ExecContext(ctx, `INSERT INTO to_device (pos, user_id, device_id, json) VALUES (?, ?, ?, ?)`, pos+int64(i), r.user, r.device, []byte(r.j)); err != nil {
				return err
			}
		}
		return nil
	})
	return recipients, dup, err
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
