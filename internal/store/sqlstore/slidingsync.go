package sqlstore

import (
	"context"
	"strings"

	"conclave/internal/store"
)

func (s *Shared) SlidingConn(ctx context.Context, userID, deviceID, connID string) (*store.SlidingConn, error) {
	c := store.SlidingConn{UserID: userID, DeviceID: deviceID, ConnID: connID}
	err := s.b.Read().QueryRow(ctx, `SELECT id, seq, prev_seq, state, prev_state, updated_ts FROM sliding_sync_connections
		WHERE user_id = ? AND device_id = ? AND conn_id = ?`, userID, deviceID, connID).
		Scan(&c.ID, &c.Seq, &c.PrevSeq, &c.State, &c.PrevState, &c.UpdatedTS)
	if err != nil {
		return nil, notFound(err)
	}
	return &c, nil
}

func (s *Shared) SlidingRooms(ctx context.Context, conn int64) ([]store.SlidingRoom, error) {
	rows, err := s.b.Read().Query(ctx, `SELECT room_id, seq, sent, config, lazy, prev_sent, prev_config, prev_lazy FROM sliding_sync_rooms WHERE conn = ?`, conn)
	return collect(rows, err, func(r Rows, v *store.SlidingRoom) error {
		return r.Scan(&v.RoomID, &v.Seq, &v.Sent, &v.Config, &v.Lazy, &v.PrevSent, &v.PrevConfig, &v.PrevLazy)
	})
}

// deleteSlidingConns deletes the connections a query selects (its ids),
// rooms first.
func deleteSlidingConns(ctx context.Context, tx Querier, where string, args ...any) error {
	if _, err := tx.Exec(ctx, `DELETE FROM sliding_sync_rooms WHERE conn IN (SELECT id FROM sliding_sync_connections WHERE `+where+`)`, args...); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `DELETE FROM sliding_sync_connections WHERE `+where, args...)
	return err
}

func (s *Shared) NewSlidingConn(ctx context.Context, c *store.SlidingConn, maxPerDevice int, expireBefore int64) (int64, error) {
	var id int64
	err := s.b.Tx(ctx, func(tx Querier) error {
		if err := deleteSlidingConns(ctx, tx, `user_id = ? AND device_id = ? AND conn_id = ?`, c.UserID, c.DeviceID, c.ConnID); err != nil {
			return err
		}
		if err := deleteSlidingConns(ctx, tx, `updated_ts < ?`, expireBefore); err != nil {
			return err
		}
		// Keep the device's maxPerDevice-1 most recently used, making room
		// for the new one.
		if err := deleteSlidingConns(ctx, tx, `user_id = ?1 AND device_id = ?2 AND id NOT IN (SELECT id FROM sliding_sync_connections
			WHERE user_id = ?1 AND device_id = ?2 ORDER BY updated_ts DESC, id DESC LIMIT ?3)`, c.UserID, c.DeviceID, max(maxPerDevice-1, 0)); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `INSERT INTO sliding_sync_connections (user_id, device_id, conn_id, seq, prev_seq, state, prev_state, updated_ts)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`, c.UserID, c.DeviceID, c.ConnID, c.Seq, c.PrevSeq, nonNil(c.State), nonNil(c.PrevState), c.UpdatedTS).Scan(&id)
	})
	if err != nil && s.b.IsUnique(err) {
		return 0, store.ErrConflict // a concurrent request started the same connection
	}
	return id, err
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func (s *Shared) AdvanceSlidingConn(ctx context.Context, conn, latest int64, u store.SlidingConnUpdate, rooms []store.SlidingRoom) error {
	return s.b.Tx(ctx, func(tx Querier) error {
		n, err := tx.Exec(ctx, `UPDATE sliding_sync_connections SET seq = ?, prev_seq = ?, state = ?, prev_state = ?, updated_ts = ?
			WHERE id = ? AND seq = ?`, u.Seq, u.PrevSeq, nonNil(u.State), nonNil(u.PrevState), u.UpdatedTS, conn, latest)
		if err != nil {
			return err
		}
		if n == 0 {
			return store.ErrConflict
		}
		if u.PrevSeq != latest {
			// The client never took the latest position: what it changed
			// goes back to how it was before.
			if _, err := tx.Exec(ctx, `UPDATE sliding_sync_rooms SET sent = prev_sent, config = prev_config, lazy = prev_lazy, seq = 0 WHERE conn = ? AND seq = ?`, conn, latest); err != nil {
				return err
			}
		}
		for _, r := range rooms {
			if _, err := tx.Exec(ctx, `INSERT INTO sliding_sync_rooms (conn, room_id, seq, sent, config, lazy, prev_sent, prev_config, prev_lazy)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT (conn, room_id) DO UPDATE SET seq = excluded.seq, sent = excluded.sent, config = excluded.config, lazy = excluded.lazy,
				prev_sent = excluded.prev_sent, prev_config = excluded.prev_config, prev_lazy = excluded.prev_lazy`,
				conn, r.RoomID, r.Seq, r.Sent, r.Config, nonNil(r.Lazy), r.PrevSent, r.PrevConfig, nonNil(r.PrevLazy)); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *Shared) TouchSlidingConn(ctx context.Context, conn, ts int64) error {
	_, err := s.b.Write().Exec(ctx, `UPDATE sliding_sync_connections SET updated_ts = ? WHERE id = ?`, ts, conn)
	return err
}

// LatestEventPositions looks up each room's newest event of the given types
// with one statement per chunk of rooms: a subquery per room walks the
// room's (room_id, pos) index backwards from upto and stops at the first
// match, so a room's size does not matter. VALUES rows are named column1 by
// both backends.
func (s *Shared) LatestEventPositions(ctx context.Context, roomIDs, types []string, upto int64) (map[string]int64, error) {
	out := make(map[string]int64, len(roomIDs))
	if len(types) == 0 {
		return out, nil
	}
	chunk := max(s.d.MaxList-len(types)-1, 1)
	for start := 0; start < len(roomIDs); start += chunk {
		ids := roomIDs[start:min(start+chunk, len(roomIDs))]
		// Parameters in the order the text uses them: upto, types, rooms.
		args := make([]any, 0, len(ids)+len(types)+1)
		args = append(args, upto)
		typeCond, args := s.d.In("e.type", types, args)
		for _, id := range ids {
			args = append(args, id)
		}
		rows, err := s.b.Read().Query(ctx, `SELECT v.column1, (SELECT e.pos FROM events e WHERE e.room_id = v.column1 AND e.pos > 0 AND e.pos <= ? AND `+typeCond+`
			ORDER BY e.pos DESC LIMIT 1) FROM (VALUES `+strings.Repeat("(?), ", len(ids)-1)+`(?)) AS v`, args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id string
			var pos *int64
			if err := rows.Scan(&id, &pos); err != nil {
				rows.Close()
				return nil, err
			}
			if pos != nil {
				out[id] = *pos
			}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s *Shared) SlidingStamps(ctx context.Context, userID string) (int64, []byte, error) {
	var pos int64
	var stamps []byte
	err := s.b.Read().QueryRow(ctx, `SELECT pos, stamps FROM sliding_sync_stamps WHERE user_id = ?`, userID).Scan(&pos, &stamps)
	if err != nil {
		return 0, nil, notFound(err)
	}
	return pos, stamps, nil
}

func (s *Shared) PutSlidingStamps(ctx context.Context, userID string, pos int64, stamps []byte) error {
	_, err := s.b.Write().Exec(ctx, `INSERT INTO sliding_sync_stamps (user_id, pos, stamps) VALUES (?, ?, ?)
		ON CONFLICT (user_id) DO UPDATE SET pos = excluded.pos, stamps = excluded.stamps WHERE sliding_sync_stamps.pos < excluded.pos`,
		userID, pos, stamps)
	return err
}
