package sqlite

import (
	"context"
	"strings"

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
	// The read point is the newest of the user's read receipts (public or
	// private, any thread) and their own latest membership.
	var from int64
	err := db.r.QueryRowContext(ctx, `SELECT coalesce(max(p), 0) FROM (
		SELECT e.pos AS p FROM receipts r JOIN events e ON e.event_id = r.event_id WHERE r.room_id = ? AND r.user_id = ? AND r.type IN ('m.read', 'm.read.private')
		UNION ALL SELECT pos FROM memberships WHERE room_id = ? AND user_id = ?)`, roomID, userID, roomID, userID).Scan(&from)
	if err != nil {
		return store.Unread{}, err
	}
	u := store.Unread{ReadPos: from}
	from = max(from, since)
	rows, err := db.r.QueryContext(ctx, `SELECT json FROM events WHERE room_id = ? AND pos > ? AND pos <= ? AND sender <> ? AND state_key IS NULL
		AND type IN ('m.room.message', 'm.room.encrypted', 'm.sticker') AND redacted_by = '' ORDER BY pos DESC LIMIT ?`, roomID, from, upto, userID, maxUnreadScan)
	if err != nil {
		return u, err
	}
	defer rows.Close()
	for rows.Next() {
		var js []byte
		if err := rows.Scan(&js); err != nil {
			return u, err
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
	return strings.Contains(string(js), userID)
}
