package postgres

import (
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
