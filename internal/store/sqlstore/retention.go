package sqlstore

import (
	"context"
	"slices"

	"conclave/internal/store"
)

// Message retention (internal/retention): the rooms and their policies,
// the expired events, and the purge, which keeps each purged event's row
// (the room graph) and removes its content and what was derived from it.

func (s *Shared) RetentionRooms(ctx context.Context, after string, limit int) ([]store.RetentionRoom, error) {
	rows, err := s.b.Read().Query(ctx, `SELECT r.room_id, e.json FROM rooms r
		LEFT JOIN room_state rs ON rs.room_id = r.room_id AND rs.type = 'm.room.retention' AND rs.state_key = ''
		LEFT JOIN events e ON e.event_id = rs.event_id
		WHERE r.room_id`+s.d.Collate+` > ? ORDER BY r.room_id`+s.d.Collate+` LIMIT ?`, after, limit)
	return collect(rows, err, func(r Rows, v *store.RetentionRoom) error { return r.Scan(&v.RoomID, &v.Policy) })
}

func (s *Shared) ExpiredEvents(ctx context.Context, roomID string, before, afterTS, afterPos int64, limit int) ([]store.ExpiredEvent, error) {
	// The (room_id, origin_server_ts) index walks the room's events by
	// time; forward extremities are never purged (Synapse keeps a room's
	// latest events too: new events must have something to cite).
	rows, err := s.b.Read().Query(ctx, `SELECT event_id, pos, origin_server_ts, json FROM events
		WHERE room_id = ? AND origin_server_ts < ? AND (origin_server_ts > ? OR (origin_server_ts = ? AND pos > ?))
		AND state_key IS NULL AND kind IN (0, 2, 4)
		AND event_id NOT IN (SELECT event_id FROM forward_extremities WHERE room_id = ?)
		ORDER BY origin_server_ts, pos LIMIT ?`, roomID, before, afterTS, afterTS, afterPos, roomID, limit)
	return collect(rows, err, func(r Rows, v *store.ExpiredEvent) error { return r.Scan(&v.EventID, &v.Pos, &v.TS, &v.JSON) })
}

func (s *Shared) PurgeEvents(ctx context.Context, roomID string, events []store.PurgedEvent) (int, error) {
	if len(events) == 0 {
		return 0, nil
	}
	var purged []int64
	err := s.b.Tx(ctx, func(tx Querier) error {
		purged = purged[:0]
		// The room's writer lock: a concurrent write cannot make one of
		// these events an extremity between the check and the update.
		if err := s.b.Lock(ctx, tx, LockRoom, roomID); err != nil {
			return err
		}
		if s.d.ArrayParams {
			// One statement per chunk: a round trip per event would be most
			// of the purge's time.
			for chunk := range slices.Chunk(events, 1000) {
				ids := make([]string, len(chunk))
				jsons := make([][]byte, len(chunk))
				for i, e := range chunk {
					ids[i], jsons[i] = e.EventID, e.JSON
				}
				rows, err := tx.Query(ctx, `UPDATE events e SET json = v.json, kind = ?, relates_to = '', rel_type = '', contains_url = false, txn_id = '', sender_device = ''
					FROM (SELECT unnest(CAST(? AS text[])) AS id, unnest(CAST(? AS bytea[])) AS json) v
					WHERE e.event_id = v.id AND e.room_id = ? AND e.kind IN (0, 2, 4) AND e.state_key IS NULL
					AND NOT EXISTS (SELECT 1 FROM forward_extremities f WHERE f.room_id = ? AND f.event_id = e.event_id)
					RETURNING e.pos`, store.KindPurged, ids, jsons, roomID, roomID)
				got, err := collect(rows, err, func(r Rows, v *int64) error { return r.Scan(v) })
				if err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `DELETE FROM event_search WHERE `+s.d.SearchKey+` = ANY(?)`, got); err != nil {
					return err
				}
				purged = append(purged, got...)
			}
		} else {
			for _, e := range events {
				var pos int64
				rows, err := tx.Query(ctx, `UPDATE events SET json = ?, kind = ?, relates_to = '', rel_type = '', contains_url = false, txn_id = '', sender_device = ''
					WHERE event_id = ? AND room_id = ? AND kind IN (0, 2, 4) AND state_key IS NULL
					AND NOT EXISTS (SELECT 1 FROM forward_extremities f WHERE f.room_id = ? AND f.event_id = ?)
					RETURNING pos`, e.JSON, store.KindPurged, e.EventID, roomID, roomID, e.EventID)
				if err != nil {
					return err
				}
				found := false
				for rows.Next() {
					if err := rows.Scan(&pos); err != nil {
						rows.Close()
						return err
					}
					found = true
				}
				rows.Close()
				if err := rows.Err(); err != nil {
					return err
				}
				if !found {
					continue
				}
				purged = append(purged, pos)
				// One statement per event: FTS5 finds a rowid by equality.
				if _, err := tx.Exec(ctx, `DELETE FROM event_search WHERE `+s.d.SearchKey+` = ?`, pos); err != nil {
					return err
				}
			}
		}
		for chunk := range slices.Chunk(purged, 1000) {
			// Notifications of the purged events. The table's key leads with
			// the user, so the room's members (the only users notified of
			// its events) are named to reach the rows by key.
			cond, args := s.inInts("pos", chunk, []any{roomID, roomID})
			if _, err := tx.Exec(ctx, `DELETE FROM event_push_actions WHERE room_id = ?
				AND user_id IN (SELECT user_id FROM memberships WHERE room_id = ?) AND `+cond, args...); err != nil {
				return err
			}
			// And their rows for the common outcome (keyed by room and pos).
			cond, args = s.inInts("pos", chunk, []any{roomID})
			if _, err := tx.Exec(ctx, `DELETE FROM event_notifs WHERE room_id = ? AND `+cond, args...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return len(purged), nil
}
