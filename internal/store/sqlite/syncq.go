package sqlite

import (
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
