package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"sort"

	"conclave/internal/store"
)

// Device lists across servers (migration 0020).

func (s *Shared) LocalDeviceList(ctx context.Context, userID string) ([]store.DeviceListEntry, error) {
	rows, err := s.b.Read().Query(ctx, `SELECT d.device_id, d.display_name, k.key_json FROM devices d
		LEFT JOIN device_keys k ON k.user_id = d.user_id AND k.device_id = d.device_id
		WHERE d.user_id = ? ORDER BY d.device_id`+s.d.Collate, userID)
	return collect(rows, err, func(r Rows, e *store.DeviceListEntry) error {
		var j []byte
		err := r.Scan(&e.DeviceID, &e.DisplayName, &j)
		if j != nil {
			e.Keys = j
		}
		return err
	})
}

func (s *Shared) DeviceListOutbound(ctx context.Context, userID string) (map[string]string, int64, error) {
	out := map[string]string{}
	rows, err := s.b.Read().Query(ctx, `SELECT device_id, hash FROM device_list_outbound WHERE user_id = ?`, userID)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	for rows.Next() {
		var d, h string
		if err := rows.Scan(&d, &h); err != nil {
			return nil, 0, err
		}
		out[d] = h
	}
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	var id int64
	err = s.b.Read().QueryRow(ctx, `SELECT stream_id FROM device_list_outbound_streams WHERE user_id = ?`, userID).Scan(&id)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, 0, err
	}
	return out, id, nil
}

func (s *Shared) SetDeviceListOutbound(ctx context.Context, userID string, hashes map[string]string, streamID, announcedPos int64) error {
	ids := make([]string, 0, len(hashes))
	for d := range hashes {
		ids = append(ids, d)
	}
	sort.Strings(ids)
	return s.b.Tx(ctx, func(tx Querier) error {
		for _, d := range ids {
			var err error
			if h := hashes[d]; h == "" {
				_, err = tx.Exec(ctx, `DELETE FROM device_list_outbound WHERE user_id = ? AND device_id = ?`, userID, d)
			} else {
				_, err = tx.Exec(ctx, `INSERT INTO device_list_outbound (user_id, device_id, hash) VALUES (?, ?, ?)
					ON CONFLICT (user_id, device_id) DO UPDATE SET hash = excluded.hash`, userID, d, h)
			}
			if err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO device_list_outbound_streams (user_id, stream_id, announced_pos) VALUES (?, ?, ?)
			ON CONFLICT (user_id) DO UPDATE SET stream_id = excluded.stream_id,
			announced_pos = CASE WHEN excluded.announced_pos > device_list_outbound_streams.announced_pos
				THEN excluded.announced_pos ELSE device_list_outbound_streams.announced_pos END`, userID, streamID, announcedPos)
		return err
	})
}

func (s *Shared) LastDeviceListChange(ctx context.Context, userID string) (int64, error) {
	var pos sql.NullInt64
	err := s.b.Read().QueryRow(ctx, `SELECT max(pos) FROM device_list_changes WHERE user_id = ?`, userID).Scan(&pos)
	return pos.Int64, err
}

func (s *Shared) UnannouncedDeviceLists(ctx context.Context) ([]string, error) {
	return queryStrings(ctx, s.b.Read(), `SELECT c.user_id FROM device_list_changes c JOIN users u ON u.user_id = c.user_id
		LEFT JOIN device_list_outbound_streams o ON o.user_id = c.user_id
		GROUP BY c.user_id, o.announced_pos HAVING max(c.pos) > COALESCE(o.announced_pos, 0) ORDER BY c.user_id`+s.d.Collate)
}

func (s *Shared) RemoteDeviceList(ctx context.Context, userID string) ([]store.DeviceListEntry, map[string]json.RawMessage, int64, bool, error) {
	var streamID int64
	err := s.b.Read().QueryRow(ctx, `SELECT stream_id FROM remote_device_lists WHERE user_id = ?`, userID).Scan(&streamID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, 0, false, nil
	}
	if err != nil {
		return nil, nil, 0, false, err
	}
	rows, err := s.b.Read().Query(ctx, `SELECT device_id, display_name, key_json FROM remote_devices WHERE user_id = ? ORDER BY device_id`+s.d.Collate, userID)
	devs, err := collect(rows, err, func(r Rows, e *store.DeviceListEntry) error {
		var j []byte
		err := r.Scan(&e.DeviceID, &e.DisplayName, &j)
		if j != nil {
			e.Keys = j
		}
		return err
	})
	if err != nil {
		return nil, nil, 0, false, err
	}
	csk := map[string]json.RawMessage{}
	rows, err = s.b.Read().Query(ctx, `SELECT key_type, key_json FROM remote_cross_signing_keys WHERE user_id = ?`, userID)
	if err != nil {
		return nil, nil, 0, false, err
	}
	defer rows.Close()
	for rows.Next() {
		var typ string
		var j []byte
		if err := rows.Scan(&typ, &j); err != nil {
			return nil, nil, 0, false, err
		}
		csk[typ] = j
	}
	return devs, csk, streamID, true, rows.Err()
}

func nullableJSON(j json.RawMessage) any {
	if j == nil {
		return nil
	}
	return []byte(j)
}

func (s *Shared) ReplaceRemoteDeviceList(ctx context.Context, userID string, streamID int64, devices []store.DeviceListEntry, crossSigning map[string]json.RawMessage) error {
	types := make([]string, 0, len(crossSigning))
	for t := range crossSigning {
		types = append(types, t)
	}
	sort.Strings(types)
	return s.b.Tx(ctx, func(tx Querier) error {
		if err := dropRemote(ctx, tx, userID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO remote_device_lists (user_id, stream_id) VALUES (?, ?)`, userID, streamID); err != nil {
			return err
		}
		for _, d := range devices {
			if _, err := tx.Exec(ctx, `INSERT INTO remote_devices (user_id, device_id, display_name, key_json) VALUES (?, ?, ?, ?)
				ON CONFLICT (user_id, device_id) DO UPDATE SET display_name = excluded.display_name, key_json = excluded.key_json`,
				userID, d.DeviceID, d.DisplayName, nullableJSON(d.Keys)); err != nil {
				return err
			}
		}
		for _, t := range types {
			if _, err := tx.Exec(ctx, `INSERT INTO remote_cross_signing_keys (user_id, key_type, key_json) VALUES (?, ?, ?)`, userID, t, []byte(crossSigning[t])); err != nil {
				return err
			}
		}
		return s.deviceListChanged(ctx, tx, userID)
	})
}

func (s *Shared) UpdateRemoteDevice(ctx context.Context, userID string, streamID int64, dev store.DeviceListEntry, deleted bool) (bool, error) {
	applied := false
	err := s.b.Tx(ctx, func(tx Querier) error {
		applied = false
		var cur int64
		err := tx.QueryRow(ctx, `SELECT stream_id FROM remote_device_lists WHERE user_id = ?`+s.d.ForUpdate, userID).Scan(&cur)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if err == nil && streamID > cur {
			if deleted {
				_, err = tx.Exec(ctx, `DELETE FROM remote_devices WHERE user_id = ? AND device_id = ?`, userID, dev.DeviceID)
			} else {
				_, err = tx.Exec(ctx, `INSERT INTO remote_devices (user_id, device_id, display_name, key_json) VALUES (?, ?, ?, ?)
					ON CONFLICT (user_id, device_id) DO UPDATE SET display_name = excluded.display_name, key_json = excluded.key_json`,
					userID, dev.DeviceID, dev.DisplayName, nullableJSON(dev.Keys))
			}
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE remote_device_lists SET stream_id = ? WHERE user_id = ?`, streamID, userID); err != nil {
				return err
			}
			applied = true
		}
		return s.deviceListChanged(ctx, tx, userID)
	})
	return applied, err
}

func (s *Shared) PutRemoteCrossSigningKeys(ctx context.Context, userID string, keys map[string]json.RawMessage) error {
	types := make([]string, 0, len(keys))
	for t := range keys {
		types = append(types, t)
	}
	sort.Strings(types)
	return s.b.Tx(ctx, func(tx Querier) error {
		var cached bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM remote_device_lists WHERE user_id = ?)`, userID).Scan(&cached); err != nil {
			return err
		}
		if cached {
			for _, t := range types {
				if _, err := tx.Exec(ctx, `INSERT INTO remote_cross_signing_keys (user_id, key_type, key_json) VALUES (?, ?, ?)
					ON CONFLICT (user_id, key_type) DO UPDATE SET key_json = excluded.key_json`, userID, t, []byte(keys[t])); err != nil {
					return err
				}
			}
		}
		return s.deviceListChanged(ctx, tx, userID)
	})
}

func dropRemote(ctx context.Context, tx Querier, userID string) error {
	for _, table := range []string{"remote_device_lists", "remote_devices", "remote_cross_signing_keys"} {
		if _, err := tx.Exec(ctx, `DELETE FROM `+table+` WHERE user_id = ?`, userID); err != nil {
			return err
		}
	}
	return nil
}

func (s *Shared) DropRemoteDeviceLists(ctx context.Context, userIDs []string) error {
	if len(userIDs) == 0 {
		return nil
	}
	return s.b.Tx(ctx, func(tx Querier) error {
		for _, u := range userIDs {
			if err := dropRemote(ctx, tx, u); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *Shared) DropUnsharedRemoteDeviceLists(ctx context.Context) ([]string, error) {
	var dropped []string
	err := s.b.Tx(ctx, func(tx Querier) error {
		var err error
		dropped, err = queryStrings(ctx, tx, `SELECT r.user_id FROM remote_device_lists r WHERE NOT EXISTS (
			SELECT 1 FROM memberships m1 JOIN memberships m2 ON m2.room_id = m1.room_id JOIN users u ON u.user_id = m2.user_id
			WHERE m1.user_id = r.user_id AND m1.membership = 'join' AND m2.membership = 'join')`)
		if err != nil {
			return err
		}
		for _, u := range dropped {
			if err := dropRemote(ctx, tx, u); err != nil {
				return err
			}
		}
		return nil
	})
	return dropped, err
}

func (s *Shared) RecordDeviceListChanges(ctx context.Context, userIDs []string) error {
	if len(userIDs) == 0 {
		return nil
	}
	return s.b.Tx(ctx, func(tx Querier) error { return s.deviceListChanged(ctx, tx, userIDs...) })
}
