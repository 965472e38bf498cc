package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"conclave/internal/store"
)

// ToDeviceMessages stays per backend (the other keys are in store/sqlstore):
// here the acknowledged messages are deleted by the reading statement, one
// round trip per /sync.
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
