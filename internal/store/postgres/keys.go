package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"sort"

	"github.com/jackc/pgx/v5"

	"conclave/internal/changes"
	"conclave/internal/store"
)

func init() {
	// A deleted device takes its keys, pending to-device messages, sent
	// transaction IDs and the signatures over it along.
	deviceCleanups = append(deviceCleanups,
		`DELETE FROM device_keys WHERE user_id = $1 AND device_id = $2`,
		`DELETE FROM one_time_keys WHERE user_id = $1 AND device_id = $2`,
		`DELETE FROM fallback_keys WHERE user_id = $1 AND device_id = $2`,
		`DELETE FROM to_device WHERE user_id = $1 AND device_id = $2`,
		`DELETE FROM to_device_txns WHERE user_id = $1 AND device_id = $2`,
		`DELETE FROM key_signatures WHERE target_user_id = $1 AND target_key_id = $2`,
		`DELETE FROM dehydrated_devices WHERE user_id = $1 AND device_id = $2`,
	)
}

// deviceListChanged records a device list change for each user at fresh
// positions: the allocation and the rows go out in one round trip, so the
// stream row lock is held from there to the commit only.
func deviceListChanged(ctx context.Context, tx pgx.Tx, userIDs ...string) error {
	if len(userIDs) == 0 {
		return nil
	}
	var b pgx.Batch
	b.Queue(setMarksSQL, changes.Payload(ctx))
	b.Queue(`UPDATE stream SET pos = pos + $1 WHERE id = 1`, len(userIDs))
	for i, u := range userIDs {
		b.Queue(`INSERT INTO device_list_changes (user_id, pos) VALUES ($1, `+lastPosSQL+` - $2)`, u, len(userIDs)-1-i)
	}
	return tx.SendBatch(ctx, &b).Close()
}

func (db *DB) UploadKeys(ctx context.Context, u *store.KeyUpload) (map[string]int, bool, error) {
	var counts map[string]int
	changed := false
	err := db.tx(ctx, func(tx pgx.Tx) error {
		var err error
		counts, changed, err = uploadKeysTx(ctx, tx, u)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return counts, changed, nil
}

func uploadKeysTx(ctx context.Context, tx pgx.Tx, u *store.KeyUpload) (map[string]int, bool, error) {
	changed := false
	err := func() error {
		// Device keys are checked first and written last: a change takes a
		// stream position, which holds the stream lock until commit.
		if dk := u.DeviceKeys; dk != nil {
			var oldJSON []byte
			var oldEd, oldCurve string
			err := tx.QueryRow(ctx, `SELECT key_json, ed25519, curve25519 FROM device_keys WHERE user_id = $1 AND device_id = $2 FOR UPDATE`, u.UserID, u.DeviceID).Scan(&oldJSON, &oldEd, &oldCurve)
			switch {
			case errors.Is(err, pgx.ErrNoRows):
				changed = true
			case err != nil:
				return err
			case oldEd != dk.Ed25519 || oldCurve != dk.Curve25519:
				return store.ErrIdentityKeysChanged
			default:
				changed = !bytes.Equal(oldJSON, dk.JSON)
			}
		}
		for _, k := range u.OneTimeKeys {
			tag, err := tx.Exec(ctx, `INSERT INTO one_time_keys (user_id, device_id, algorithm, key_id, key_json) VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (user_id, device_id, key_id) DO NOTHING`, u.UserID, u.DeviceID, k.Algorithm, k.KeyID, []byte(k.JSON))
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 1 {
				continue
			}
			var old []byte
			err = tx.QueryRow(ctx, `SELECT key_json FROM one_time_keys WHERE user_id = $1 AND device_id = $2 AND key_id = $3`, u.UserID, u.DeviceID, k.KeyID).Scan(&old)
			if errors.Is(err, pgx.ErrNoRows) {
				// Claimed by a concurrent /keys/claim in between: it was
				// stored and handed out, so it must not come back.
				continue
			}
			if err != nil {
				return err
			}
			if !bytes.Equal(old, k.JSON) {
				return store.ErrConflict
			}
		}
		for _, k := range u.FallbackKeys {
			var oldID string
			var old []byte
			err := tx.QueryRow(ctx, `SELECT key_id, key_json FROM fallback_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3`, u.UserID, u.DeviceID, k.Algorithm).Scan(&oldID, &old)
			if err == nil && oldID == k.KeyID && bytes.Equal(old, k.JSON) {
				continue // same key again: keeps its used flag
			}
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO fallback_keys (user_id, device_id, algorithm, key_id, key_json, used) VALUES ($1, $2, $3, $4, $5, false)
				ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET key_id = excluded.key_id, key_json = excluded.key_json, used = false`,
				u.UserID, u.DeviceID, k.Algorithm, k.KeyID, []byte(k.JSON)); err != nil {
				return err
			}
		}
		if dk := u.DeviceKeys; dk != nil && changed {
			if _, err := tx.Exec(ctx, `INSERT INTO device_keys (user_id, device_id, key_json, ed25519, curve25519) VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = excluded.key_json`, u.UserID, u.DeviceID, []byte(dk.JSON), dk.Ed25519, dk.Curve25519); err != nil {
				return err
			}
			if err := deviceListChanged(ctx, tx, u.UserID); err != nil {
				return err
			}
		}
		return nil
	}()
	if err != nil {
		return nil, false, err
	}
	counts, err := otkCounts(ctx, tx, u.UserID, u.DeviceID)
	if err == nil && (len(u.OneTimeKeys) > 0 || len(u.FallbackKeys) > 0) {
		err = keyCountsChanged(ctx, tx)
	}
	return counts, changed, err
}

// keyCountsChanged takes a stream position for a change of one-time or
// fallback keys, although no table records it: its notification tells the
// other processes sharing the database, in order with everything else,
// that the key counts they cache changed (changes/feed.go). Called last in
// the transaction: the stream row stays locked until the commit.
func keyCountsChanged(ctx context.Context, tx pgx.Tx) error {
	var b pgx.Batch
	b.Queue(setMarksSQL, changes.Payload(ctx))
	b.Queue(`UPDATE stream SET pos = pos + 1 WHERE id = 1`)
	return tx.SendBatch(ctx, &b).Close()
}

func (db *DB) PutDehydratedDevice(ctx context.Context, userID, deviceID string, displayName *string, data json.RawMessage, keys *store.KeyUpload, now int64, tokenHash []byte) error {
	return db.tx(ctx, func(tx pgx.Tx) error {
		var old string
		err := tx.QueryRow(ctx, `SELECT device_id FROM dehydrated_devices WHERE user_id = $1 FOR UPDATE`, userID).Scan(&old)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if old != "" {
			if err := deleteDevicesTx(ctx, tx, userID, []string{old}); err != nil {
				return err
			}
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM devices WHERE user_id = $1 AND device_id = $2)`, userID, deviceID).Scan(&exists); err != nil {
			return err
		}
		if exists {
			return store.ErrConflict
		}
		if _, err := tx.Exec(ctx, `INSERT INTO devices (user_id, device_id, display_name, created_ts) VALUES ($1, $2, $3, $4)`, userID, deviceID, displayName, now); err != nil {
			if isConstraint(err) {
				return store.ErrConflict
			}
			return err
		}
		if err := insertToken(ctx, tx, userID, deviceID, store.NewToken{AccessHash: tokenHash}, now); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO dehydrated_devices (user_id, device_id, device_data) VALUES ($1, $2, $3)
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
	err := db.pool.QueryRow(ctx, `SELECT device_id, device_data FROM dehydrated_devices WHERE user_id = $1`, userID).Scan(&id, &data)
	if err != nil {
		return "", nil, notFound(err)
	}
	return id, data, nil
}

func (db *DB) DeleteDehydratedDevice(ctx context.Context, userID string) (string, error) {
	var id string
	err := db.tx(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT device_id FROM dehydrated_devices WHERE user_id = $1 FOR UPDATE`, userID).Scan(&id); err != nil {
			return notFound(err)
		}
		return deleteDevicesTx(ctx, tx, userID, []string{id})
	})
	return id, err
}

func otkCounts(ctx context.Context, q querier, userID, deviceID string) (map[string]int, error) {
	rows, err := q.Query(ctx, `SELECT algorithm, count(*) FROM one_time_keys WHERE user_id = $1 AND device_id = $2 GROUP BY algorithm`, userID, deviceID)
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
	return otkCounts(ctx, db.pool, userID, deviceID)
}

func (db *DB) UnusedFallbackKeyAlgorithms(ctx context.Context, userID, deviceID string) ([]string, error) {
	return queryStrings(ctx, db.pool, `SELECT algorithm FROM fallback_keys WHERE user_id = $1 AND device_id = $2 AND NOT used ORDER BY algorithm COLLATE "C"`, userID, deviceID)
}

func (db *DB) DeviceKeys(ctx context.Context, userID string, deviceIDs []string) ([]store.DeviceKeys, error) {
	q := `SELECT k.device_id, k.key_json, k.ed25519, k.curve25519, d.display_name FROM device_keys k
		LEFT JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id WHERE k.user_id = $1`
	args := []any{userID}
	if len(deviceIDs) > 0 {
		q += ` AND k.device_id = ANY($2)`
		args = append(args, deviceIDs)
	}
	rows, err := db.pool.Query(ctx, q+` ORDER BY k.device_id COLLATE "C"`, args...)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.DeviceKeys, error) {
		k := store.DeviceKeys{UserID: userID}
		var j []byte
		err := row.Scan(&k.DeviceID, &j, &k.Ed25519, &k.Curve25519, &k.DisplayName)
		k.JSON = j
		return k, err
	})
	if len(out) == 0 {
		out = nil
	}
	return out, err
}

func (db *DB) ClaimKeys(ctx context.Context, reqs []store.ClaimRequest) ([]store.ClaimedKey, error) {
	var out []store.ClaimedKey
	err := db.tx(ctx, func(tx pgx.Tx) error {
		out = out[:0]
		for _, r := range reqs {
			var id string
			var j []byte
			// The oldest key not being claimed by a concurrent transaction
			// (SKIP LOCKED), removed: each key is handed out once. Without
			// SKIP LOCKED a second claimer would wait for the first, then find
			// its chosen row gone and fall back although keys remain.
			err := tx.QueryRow(ctx, `DELETE FROM one_time_keys WHERE seq = (
					SELECT seq FROM one_time_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED)
				RETURNING key_id, key_json`,
				r.UserID, r.DeviceID, r.Algorithm).Scan(&id, &j)
			if errors.Is(err, pgx.ErrNoRows) {
				err = tx.QueryRow(ctx, `UPDATE fallback_keys SET used = true WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 RETURNING key_id, key_json`,
					r.UserID, r.DeviceID, r.Algorithm).Scan(&id, &j)
				if errors.Is(err, pgx.ErrNoRows) {
					continue
				}
			}
			if err != nil {
				return err
			}
			out = append(out, store.ClaimedKey{UserID: r.UserID, DeviceID: r.DeviceID, Key: store.OneTimeKey{KeyID: id, Algorithm: r.Algorithm, JSON: j}})
		}
		if len(out) > 0 {
			return keyCountsChanged(ctx, tx)
		}
		return nil
	})
	return out, err
}

func (db *DB) CrossSigningKeys(ctx context.Context, userID string) (map[string]store.CrossSigningKey, error) {
	rows, err := db.pool.Query(ctx, `SELECT key_type, pubkey, key_json FROM cross_signing_keys WHERE user_id = $1`, userID)
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
	return db.tx(ctx, func(tx pgx.Tx) error {
		for _, k := range keys {
			var old string
			err := tx.QueryRow(ctx, `SELECT pubkey FROM cross_signing_keys WHERE user_id = $1 AND key_type = $2 FOR UPDATE`, userID, k.Type).Scan(&old)
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
			if err == nil && old != k.PubKey {
				// Signatures by or over the replaced key mean nothing any more.
				if _, err := tx.Exec(ctx, `DELETE FROM key_signatures WHERE signer_user_id = $1 AND signer_key_id = $2`, userID, "ed25519:"+old); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `DELETE FROM key_signatures WHERE target_user_id = $1 AND target_key_id = $2`, userID, old); err != nil {
					return err
				}
			}
			if _, err := tx.Exec(ctx, `INSERT INTO cross_signing_keys (user_id, key_type, pubkey, key_json) VALUES ($1, $2, $3, $4)
				ON CONFLICT (user_id, key_type) DO UPDATE SET pubkey = excluded.pubkey, key_json = excluded.key_json`, userID, k.Type, k.PubKey, []byte(k.JSON)); err != nil {
				return err
			}
		}
		return deviceListChanged(ctx, tx, userID)
	})
}

func (db *DB) PutKeySignatures(ctx context.Context, sigs []store.KeySignature, changedUsers []string) error {
	return db.tx(ctx, func(tx pgx.Tx) error {
		for _, s := range sigs {
			if _, err := tx.Exec(ctx, `INSERT INTO key_signatures (target_user_id, target_key_id, signer_user_id, signer_key_id, signature) VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (target_user_id, target_key_id, signer_user_id, signer_key_id) DO UPDATE SET signature = excluded.signature`,
				s.TargetUserID, s.TargetKeyID, s.SignerUserID, s.SignerKeyID, s.Signature); err != nil {
				return err
			}
		}
		return deviceListChanged(ctx, tx, changedUsers...)
	})
}

func (db *DB) KeySignatures(ctx context.Context, targetUserID string) ([]store.KeySignature, error) {
	rows, err := db.pool.Query(ctx, `SELECT target_key_id, signer_user_id, signer_key_id, signature FROM key_signatures WHERE target_user_id = $1
		ORDER BY target_key_id COLLATE "C", signer_user_id COLLATE "C", signer_key_id COLLATE "C"`, targetUserID)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.KeySignature, error) {
		s := store.KeySignature{TargetUserID: targetUserID}
		err := row.Scan(&s.TargetKeyID, &s.SignerUserID, &s.SignerKeyID, &s.Signature)
		return s, err
	})
	if len(out) == 0 {
		out = nil
	}
	return out, err
}

// sharedWith selects the users sharing a joined room with $1.
const sharedWith = `SELECT m2.user_id FROM memberships m1 JOIN memberships m2 ON m2.room_id = m1.room_id
	WHERE m1.user_id = $1 AND m1.membership = 'join' AND m2.membership = 'join'`

func (db *DB) DeviceListChanges(ctx context.Context, userID string, from, to int64) ([]string, []string, error) {
	// Fast path, taken by almost every incremental /sync: with no device
	// list or membership change anywhere in (from, to], nothing below can
	// match, and the self-joins are skipped.
	var any bool
	if err := db.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM device_list_changes WHERE pos > $1 AND pos <= $2)
		OR EXISTS (SELECT 1 FROM memberships WHERE pos > $1 AND pos <= $2)`, from, to).Scan(&any); err != nil {
		return nil, nil, err
	}
	if !any {
		return nil, nil, nil
	}
	changed, err := queryStrings(ctx, db.pool, `
		SELECT user_id FROM device_list_changes WHERE pos > $2 AND pos <= $3 AND (user_id = $1 OR user_id IN (`+sharedWith+`))
		UNION
		SELECT m2.user_id FROM memberships m1 JOIN memberships m2 ON m2.room_id = m1.room_id
		WHERE m1.user_id = $1 AND m1.membership = 'join' AND m2.membership = 'join' AND m2.user_id <> $1
		  AND ((m2.pos > $2 AND m2.pos <= $3) OR (m1.pos > $2 AND m1.pos <= $3))`, userID, from, to)
	if err != nil {
		return nil, nil, err
	}
	left, err := queryStrings(ctx, db.pool, `
		SELECT DISTINCT m2.user_id FROM memberships m1 JOIN memberships m2 ON m2.room_id = m1.room_id
		WHERE m1.user_id = $1 AND m2.user_id <> $1
		  AND ((m1.membership = 'join' AND m2.membership IN ('leave', 'ban') AND m2.pos > $2 AND m2.pos <= $3)
		    OR (m1.membership IN ('leave', 'ban') AND m1.pos > $2 AND m1.pos <= $3 AND m2.membership = 'join'))
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
	err := db.tx(ctx, func(tx pgx.Tx) error {
		recipients, dup = nil, false
		// A concurrent duplicate waits here for the first to commit, then
		// inserts nothing.
		tag, err := tx.Exec(ctx, `INSERT INTO to_device_txns (user_id, device_id, txn_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, sender, senderDevice, txnID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
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
				if devs, err = queryStrings(ctx, tx, `SELECT device_id FROM devices WHERE user_id = $1 ORDER BY device_id COLLATE "C"`, m.UserID); err != nil {
					return err
				}
			} else {
				// Messages for unknown devices are dropped, as Synapse does.
				if devs, err = queryStrings(ctx, tx, `SELECT device_id FROM devices WHERE user_id = $1 AND device_id = $2`, m.UserID, m.DeviceID); err != nil {
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
		// The allocation goes out with the rows: one round trip under the
		// stream row lock before the commit.
		var b pgx.Batch
		b.Queue(setMarksSQL, changes.Payload(ctx))
		b.Queue(`UPDATE stream SET pos = pos + $1 WHERE id = 1`, len(rows))
		for i, r := range rows {
			b.Queue(`INSERT INTO to_device (pos, user_id, device_id, json) VALUES (`+lastPosSQL+` - $1, $2, $3, $4)`, len(rows)-1-i, r.user, r.device, []byte(r.j))
		}
		return tx.SendBatch(ctx, &b).Close()
	})
	return recipients, dup, err
}

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
