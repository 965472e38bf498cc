package sqlite

import (
	"bytes"
	"context"

	"conclave/internal/store"
)

func (db *DB) ChangedRooms(ctx context.Context, after, upto int64) ([]string, error) {
	return queryStrings(ctx, db.r, `SELECT DISTINCT room_id FROM events WHERE pos > ? AND pos <= ?`, after, upto)
}

func (db *DB) StateBetween(ctx context.Context, roomID string, after, before int64) ([]store.StoredEvent, error) {
	return db.queryEvents(ctx, db.r, `SELECT `+eventColumns+` FROM events e
		JOIN (SELECT max(pos) AS pos FROM events WHERE room_id = ? AND state_key IS NOT NULL AND pos > ? AND pos < ? GROUP BY type, state_key) m ON m.pos = e.pos`,
		roomID, after, before)
}

// maxUnreadScan bounds the work of counting unread events in one room.
const maxUnreadScan = 1000

func (db *DB) UnreadCounts(ctx context.Context, roomID, userID string, since, upto int64) (store.Unread, error) {
	// One query: the read point — the newest of the user's read receipts
	// (public or private, any thread) and their own latest membership — and
	// the notifying events after both it and since (no rows: a NULL json).
	rows, err := db.r.QueryContext(ctx, `WITH rp(p) AS (SELECT coalesce(max(x), 0) FROM (
			SELECT e.pos AS x FROM receipts r JOIN events e ON e.event_id = r.event_id
			WHERE r.room_id = ?1 AND r.user_id = ?2 AND r.type IN ('m.read', 'm.read.private')
			UNION ALL SELECT pos FROM memberships WHERE room_id = ?1 AND user_id = ?2) y)
		SELECT rp.p, e.json FROM rp LEFT JOIN (
			SELECT pos, json FROM events WHERE room_id = ?1 AND pos > ?3 AND pos <= ?4 AND sender <> ?2 AND state_key IS NULL
			AND type IN ('m.room.message', 'm.room.encrypted', 'm.sticker') AND redacted_by = '' ORDER BY pos DESC LIMIT ?5) e ON e.pos > rp.p`, roomID, userID, since, upto, maxUnreadScan)
	if err != nil {
		return store.Unread{}, err
	}
	defer rows.Close()
	var u store.Unread
	for rows.Next() {
		var js []byte
		if err := rows.Scan(&u.ReadPos, &js); err != nil {
			return u, err
		}
		if js == nil {
			continue
		}
		u.Notifications++
		if mentions(js, userID) {
			u.Highlights++
		}
	}
	return u, rows.Err()
}

// mentions is a cheap highlight test until push rules exist: the event
// names the user's full ID (in m.mentions or the body).
func mentions(js []byte, userID string) bool {
	return bytes.Contains(js, []byte(userID))
}
