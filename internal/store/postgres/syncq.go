package postgres

import (
	"bytes"
	"context"

	"conclave/internal/store"
)

func (db *DB) ChangedRooms(ctx context.Context, after, upto int64) ([]string, error) {
	return queryStrings(ctx, db.pool, `SELECT DISTINCT room_id FROM events WHERE pos > $1 AND pos <= $2`, after, upto)
}

func (db *DB) StateBetween(ctx context.Context, roomID string, after, before int64) ([]store.StoredEvent, error) {
	return queryEvents(ctx, db.pool, `SELECT `+eventColumns+` FROM events e
		JOIN (SELECT max(pos) AS pos FROM events WHERE room_id = $1 AND state_key IS NOT NULL AND pos > $2 AND pos < $3 GROUP BY type, state_key) m ON m.pos = e.pos`,
		roomID, after, before)
}

// maxUnreadScan bounds the work of counting unread events in one room.
const maxUnreadScan = 1000

func (db *DB) UnreadCounts(ctx context.Context, roomID, userID string, since, upto int64) (store.Unread, error) {
	// One statement: the read point — the newest of the user's read
	// receipts (public or private, any thread) and their own latest
	// membership — then the unread events after it and since (a row with a
	// NULL json when there are none).
	rows, err := db.pool.Query(ctx, `WITH rp AS (SELECT coalesce(max(p), 0) AS p FROM (
			SELECT e.pos AS p FROM receipts r JOIN events e ON e.event_id = r.event_id WHERE r.room_id = $1 AND r.user_id = $2 AND r.type IN ('m.read', 'm.read.private')
			UNION ALL SELECT pos FROM memberships WHERE room_id = $1 AND user_id = $2) x)
		SELECT rp.p, u.json FROM rp LEFT JOIN LATERAL (SELECT json FROM events WHERE room_id = $1 AND pos > greatest(rp.p, $3) AND pos <= $4 AND sender <> $2 AND state_key IS NULL
			AND type IN ('m.room.message', 'm.room.encrypted', 'm.sticker') AND redacted_by = '' ORDER BY pos DESC LIMIT $5) u ON true`,
		roomID, userID, since, upto, maxUnreadScan)
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
// names the user's full ID (in m.mentions or the body). Same as SQLite's.
func mentions(js []byte, userID string) bool {
	return bytes.Contains(js, []byte(userID))
}
