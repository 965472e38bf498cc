package sqlstore

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"sort"

	"conclave/internal/store"
)

// deviceListChanged records a device list change for each user at fresh
// stream positions.
func (s *Shared) deviceListChanged(ctx context.Context, tx Querier, userIDs ...string) error {
	rows := make([][]any, len(userIDs))
	for i, u := range userIDs {
		rows[i] = []any{u}
	}
	return s.b.InsertAtNewPositions(ctx, tx, "device_list_changes", []string{"user_id"}, rows)
}

func (s *Shared) UploadKeys(ctx context.Context, u *store.KeyUpload) (map[string]int, bool, error) {
	var counts map[string]int
	changed := false
	err := s.b.Tx(ctx, func(tx Querier) error {
		var err error
		counts, changed, err = s.uploadKeys(ctx, tx, u)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return counts, changed, nil
}

func (s *Shared) uploadKeys(ctx context.Context, tx Querier, u *store.KeyUpload) (map[string]int, bool, error) {
	changed := false
	err := func() error {
		// Device keys are checked first and written last: a change takes a
		// stream position, which on PostgreSQL holds the stream row lock
		// until the commit.
		if dk := u.DeviceKeys; dk != nil {
			var oldJSON []byte
			var oldEd, oldCurve string
			err := tx.QueryRow(ctx, `SELECT key_json, ed25519, curve25519 FROM device_keys WHERE user_id = ? AND device_id = ?`+s.d.ForUpdate, u.UserID, u.DeviceID).Scan(&oldJSON, &oldEd, &oldCurve)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				changed = true
			case err != nil:
				return err
			case oldEd != dk.Ed25519 || oldCurve != dk.Curve25519:
				// New identity keys (a new Olm account on the same device
				// ID): the one-time and fallback keys stored so far belong to
				// the old account and would only set up sessions the device
				// cannot decrypt.
				changed = true
				for _, table := range []string{"one_time_keys", "fallback_keys"} {
					if _, err := tx.Exec(ctx, `DELETE FROM `+table+` WHERE user_id = ? AND device_id = ?`, u.UserID, u.DeviceID); err != nil {
						return err
					}
				}
			default:
				changed = !bytes.Equal(oldJSON, dk.JSON)
			}
		}
		for _, k := range u.OneTimeKeys {
			n, err := tx.Exec(ctx, `INSERT INTO one_time_keys (user_id, device_id, algorithm, key_id, key_json) VALUES (?, ?, ?, ?, ?)
				ON CONFLICT (user_id, device_id, key_id) DO NOTHING`, u.UserID, u.DeviceID, k.Algorithm, k.KeyID, []byte(k.JSON))
			if err != nil {
				return err
			}
			if n == 1 {
				continue
			}
			var old []byte
			err = tx.QueryRow(ctx, `SELECT key_json FROM one_time_keys WHERE user_id = ? AND device_id = ? AND key_id = ?`, u.UserID, u.DeviceID, k.KeyID).Scan(&old)
			if errors.Is(err, sql.ErrNoRows) {
				// Claimed by a concurrent /keys/claim in between (PostgreSQL):
				// it was stored and handed out, so it must not come back.
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
			err := tx.QueryRow(ctx, `SELECT key_id, key_json FROM fallback_keys WHERE user_id = ? AND device_id = ? AND algorithm = ?`, u.UserID, u.DeviceID, k.Algorithm).Scan(&oldID, &old)
			if err == nil && oldID == k.KeyID && bytes.Equal(old, k.JSON) {
				continue // same key again: keeps its used flag
			}
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO fallback_keys (user_id, device_id, algorithm, key_id, key_json, used) VALUES (?, ?, ?, ?, ?, false)
				ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET key_id = excluded.key_id, key_json = excluded.key_json, used = false`,
				u.UserID, u.DeviceID, k.Algorithm, k.KeyID, []byte(k.JSON)); err != nil {
				return err
			}
		}
		if dk := u.DeviceKeys; dk != nil && changed {
			if _, err := tx.Exec(ctx, `INSERT INTO device_keys (user_id, device_id, key_json, ed25519, curve25519) VALUES (?, ?, ?, ?, ?)
				ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = excluded.key_json, ed25519 = excluded.ed25519, curve25519 = excluded.curve25519`, u.UserID, u.DeviceID, []byte(dk.JSON), dk.Ed25519, dk.Curve25519); err != nil {
				return err
			}
			if err := s.deviceListChanged(ctx, tx, u.UserID); err != nil {
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
		err = s.b.AnnounceChange(ctx, tx)
	}
	return counts, changed, err
}

func (s *Shared) PutDehydratedDevice(ctx context.Context, userID, deviceID string, displayName *string, data json.RawMessage, keys *store.KeyUpload, now int64, tokenHash []byte) error {
	return s.b.Tx(ctx, func(tx Querier) error {
		var old string
		err := tx.QueryRow(ctx, `SELECT device_id FROM dehydrated_devices WHERE user_id = ?`+s.d.ForUpdate, userID).Scan(&old)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if old != "" {
			if err := deleteDevices(ctx, tx, userID, []string{old}); err != nil {
				return err
			}
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM devices WHERE user_id = ? AND device_id = ?)`, userID, deviceID).Scan(&exists); err != nil {
			return err
		}
		if exists {
			return store.ErrConflict
		}
		if _, err := tx.Exec(ctx, `INSERT INTO devices (user_id, device_id, display_name, created_ts) VALUES (?, ?, ?, ?)`, userID, deviceID, displayName, now); err != nil {
			if s.b.IsUnique(err) {
				return store.ErrConflict
			}
			return err
		}
		if err := s.insertToken(ctx, tx, userID, deviceID, store.NewToken{AccessHash: tokenHash}, now); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO dehydrated_devices (user_id, device_id, device_data) VALUES (?, ?, ?)
			ON CONFLICT (user_id) DO UPDATE SET device_id = excluded.device_id, device_data = excluded.device_data`, userID, deviceID, []byte(data)); err != nil {
			return err
		}
		_, _, err = s.uploadKeys(ctx, tx, keys)
		return err
	})
}

func (s *Shared) DehydratedDevice(ctx context.Context, userID string) (string, json.RawMessage, error) {
	var id string
	var data []byte
	err := s.b.Read().QueryRow(ctx, `SELECT device_id, device_data FROM dehydrated_devices WHERE user_id = ?`, userID).Scan(&id, &data)
	if err != nil {
		return "", nil, notFound(err)
	}
	return id, data, nil
}

func (s *Shared) DeleteDehydratedDevice(ctx context.Context, userID string) (string, error) {
	var id string
	err := s.b.Tx(ctx, func(tx Querier) error {
		if err := tx.QueryRow(ctx, `SELECT device_id FROM dehydrated_devices WHERE user_id = ?`+s.d.ForUpdate, userID).Scan(&id); err != nil {
			return notFound(err)
		}
		return deleteDevices(ctx, tx, userID, []string{id})
	})
	return id, err
}

func otkCounts(ctx context.Context, q Querier, userID, deviceID string) (map[string]int, error) {
	rows, err := q.Query(ctx, `SELECT algorithm, count(*) FROM one_time_keys WHERE user_id = ? AND device_id = ? GROUP BY algorithm`, userID, deviceID)
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

func (s *Shared) OneTimeKeyCounts(ctx context.Context, userID, deviceID string) (map[string]int, error) {
	return otkCounts(ctx, s.b.Read(), userID, deviceID)
}

func (s *Shared) UnusedFallbackKeyAlgorithms(ctx context.Context, userID, deviceID string) ([]string, error) {
	return queryStrings(ctx, s.b.Read(), `SELECT algorithm FROM fallback_keys WHERE user_id = ? AND device_id = ? AND used = false ORDER BY algorithm`+s.d.Collate, userID, deviceID)
}

func (s *Shared) DeviceKeys(ctx context.Context, userID string, deviceIDs []string) ([]store.DeviceKeys, error) {
	q := `SELECT k.device_id, k.key_json, k.ed25519, k.curve25519, d.display_name FROM device_keys k
		LEFT JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id WHERE k.user_id = ?`
	args := []any{userID}
	if len(deviceIDs) > 0 {
		var in string
		in, args = s.d.In("k.device_id", deviceIDs, args)
		q += ` AND ` + in
	}
	rows, err := s.b.Read().Query(ctx, q+` ORDER BY k.device_id`+s.d.Collate, args...)
	return collect(rows, err, func(r Rows, k *store.DeviceKeys) error {
		k.UserID = userID
		var j []byte
		err := r.Scan(&k.DeviceID, &j, &k.Ed25519, &k.Curve25519, &k.DisplayName)
		k.JSON = j
		return err
	})
}

func (s *Shared) ClaimKeys(ctx context.Context, reqs []store.ClaimRequest) ([]store.ClaimedKey, error) {
	var out []store.ClaimedKey
	err := s.b.Tx(ctx, func(tx Querier) error {
		out = out[:0]
		for _, r := range reqs {
			var id string
			var j []byte
			// One statement finds and removes the oldest key: each key is
			// handed out once. On PostgreSQL a concurrent claimer skips the
			// row being taken (SKIP LOCKED); waiting for it instead, it would
			// find its chosen row gone and fall back although keys remain.
			// SQLite's one writer runs claims one at a time.
			err := tx.QueryRow(ctx, `DELETE FROM one_time_keys WHERE seq = (
					SELECT seq FROM one_time_keys WHERE user_id = ? AND device_id = ? AND algorithm = ? ORDER BY seq LIMIT 1`+s.d.SkipLocked+`)
				RETURNING key_id, key_json`,
				r.UserID, r.DeviceID, r.Algorithm).Scan(&id, &j)
			if errors.Is(err, sql.ErrNoRows) {
				err = tx.QueryRow(ctx, `UPDATE fallback_keys SET used = true WHERE user_id = ? AND device_id = ? AND algorithm = ? RETURNING key_id, key_json`,
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
		if len(out) > 0 {
			return s.b.AnnounceChange(ctx, tx)
		}
		return nil
	})
	return out, err
}

func (s *Shared) CrossSigningKeys(ctx context.Context, userID string) (map[string]store.CrossSigningKey, error) {
	rows, err := s.b.Read().Query(ctx, `SELECT key_type, pubkey, key_json FROM cross_signing_keys WHERE user_id = ?`, userID)
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

func (s *Shared) PutCrossSigningKeys(ctx context.Context, userID string, keys []store.CrossSigningKey) error {
	return s.b.Tx(ctx, func(tx Querier) error {
		for _, k := range keys {
			var old string
			err := tx.QueryRow(ctx, `SELECT pubkey FROM cross_signing_keys WHERE user_id = ? AND key_type = ?`+s.d.ForUpdate, userID, k.Type).Scan(&old)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			if err == nil && old != k.PubKey {
				// Signatures by or over the replaced key mean nothing any more.
				if _, err := tx.Exec(ctx, `DELETE FROM key_signatures WHERE signer_user_id = ? AND signer_key_id = ?`, userID, "ed25519:"+old); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `DELETE FROM key_signatures WHERE target_user_id = ? AND target_key_id = ?`, userID, old); err != nil {
					return err
				}
			}
			if _, err := tx.Exec(ctx, `INSERT INTO cross_signing_keys (user_id, key_type, pubkey, key_json) VALUES (?, ?, ?, ?)
				ON CONFLICT (user_id, key_type) DO UPDATE SET pubkey = excluded.pubkey, key_json = excluded.key_json`, userID, k.Type, k.PubKey, []byte(k.JSON)); err != nil {
				return err
			}
		}
		return s.deviceListChanged(ctx, tx, userID)
	})
}

func (s *Shared) PutKeySignatures(ctx context.Context, sigs []store.KeySignature, changedUsers []string) error {
	return s.b.Tx(ctx, func(tx Querier) error {
		for _, sig := range sigs {
			if _, err := tx.Exec(ctx, `INSERT INTO key_signatures (target_user_id, target_key_id, signer_user_id, signer_key_id, signature) VALUES (?, ?, ?, ?, ?)
				ON CONFLICT (target_user_id, target_key_id, signer_user_id, signer_key_id) DO UPDATE SET signature = excluded.signature`,
				sig.TargetUserID, sig.TargetKeyID, sig.SignerUserID, sig.SignerKeyID, sig.Signature); err != nil {
				return err
			}
		}
		return s.deviceListChanged(ctx, tx, changedUsers...)
	})
}

func (s *Shared) KeySignatures(ctx context.Context, targetUserID string) ([]store.KeySignature, error) {
	c := s.d.Collate
	rows, err := s.b.Read().Query(ctx, `SELECT target_key_id, signer_user_id, signer_key_id, signature FROM key_signatures WHERE target_user_id = ?
		ORDER BY target_key_id`+c+`, signer_user_id`+c+`, signer_key_id`+c, targetUserID)
	return collect(rows, err, func(r Rows, sig *store.KeySignature) error {
		sig.TargetUserID = targetUserID
		return r.Scan(&sig.TargetKeyID, &sig.SignerUserID, &sig.SignerKeyID, &sig.Signature)
	})
}

// sharedWith selects the users sharing a joined room with ?1.
const sharedWith = `SELECT m2.user_id FROM memberships m1 JOIN memberships m2 ON m2.room_id = m1.room_id
	WHERE m1.user_id = ?1 AND m1.membership = 'join' AND m2.membership = 'join'`

func (s *Shared) DeviceListChanges(ctx context.Context, userID string, from, to int64) ([]string, []string, error) {
	// Fast path, taken by almost every incremental /sync: with no device
	// list or membership change anywhere in (from, to], nothing below can
	// match, and the self-joins are skipped.
	var any bool
	if err := s.b.Read().QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM device_list_changes WHERE pos > ?1 AND pos <= ?2)
		OR EXISTS (SELECT 1 FROM memberships WHERE pos > ?1 AND pos <= ?2)`, from, to).Scan(&any); err != nil {
		return nil, nil, err
	}
	if !any {
		return nil, nil, nil
	}
	changed, err := queryStrings(ctx, s.b.Read(), `
		SELECT user_id FROM device_list_changes WHERE pos > ?2 AND pos <= ?3 AND (user_id = ?1 OR user_id IN (`+sharedWith+`))
		UNION
		SELECT m2.user_id FROM memberships m1 JOIN memberships m2 ON m2.room_id = m1.room_id
		WHERE m1.user_id = ?1 AND m1.membership = 'join' AND m2.membership = 'join' AND m2.user_id <> ?1
		  AND ((m2.pos > ?2 AND m2.pos <= ?3) OR (m1.pos > ?2 AND m1.pos <= ?3))`, userID, from, to)
	if err != nil {
		return nil, nil, err
	}
	left, err := queryStrings(ctx, s.b.Read(), `
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

func (s *Shared) SendToDevice(ctx context.Context, sender, senderDevice, txnID string, msgs []store.ToDeviceSend, fed []store.FedEnqueue) ([]string, bool, error) {
	var recipients []string
	dup := false
	err := s.b.Tx(ctx, func(tx Querier) error {
		recipients, dup = nil, false
		// A concurrent duplicate (PostgreSQL) waits here for the first to
		// commit, then inserts nothing.
		n, err := tx.Exec(ctx, `INSERT INTO to_device_txns (user_id, device_id, txn_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`, sender, senderDevice, txnID)
		if err != nil {
			return err
		}
		if n == 0 {
			dup = true
			return nil
		}
		var rows [][]any // user_id, device_id, json
		seen := map[string]bool{}
		for _, m := range msgs {
			var devs []string
			if m.DeviceID == "*" {
				if devs, err = queryStrings(ctx, tx, `SELECT device_id FROM devices WHERE user_id = ? ORDER BY device_id`+s.d.Collate, m.UserID); err != nil {
					return err
				}
			} else {
				// Messages for unknown devices are dropped, as Synapse does.
				if devs, err = queryStrings(ctx, tx, `SELECT device_id FROM devices WHERE user_id = ? AND device_id = ?`, m.UserID, m.DeviceID); err != nil {
					return err
				}
			}
			for _, d := range devs {
				rows = append(rows, []any{m.UserID, d, []byte(m.JSON)})
			}
			if len(devs) > 0 && !seen[m.UserID] {
				seen[m.UserID] = true
				recipients = append(recipients, m.UserID)
			}
		}
		// The EDUs for other servers commit with the transaction ID that
		// makes a retry a no-op: queued after it, a crash in between would
		// lose them for good.
		for i := range fed {
			if err := s.fedEnqueue(ctx, tx, &fed[i]); err != nil {
				return err
			}
		}
		return s.b.InsertAtNewPositions(ctx, tx, "to_device", []string{"user_id", "device_id", "json"}, rows)
	})
	return recipients, dup, err
}
