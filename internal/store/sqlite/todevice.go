package sqlite

import (
	"context"

	"conclave/internal/store"
)

// ToDeviceMessages stays per backend (the other keys are in store/sqlstore):
// here a reader looks for acknowledged messages first, so a /sync takes the
// one writer connection only when there is something to delete.
func (db *DB) ToDeviceMessages(ctx context.Context, userID, deviceID string, ack, after, upto int64, limit int) ([]store.ToDeviceMessage, error) {
	if ack > 0 {
		var pending bool
		if err := db.r.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM to_device WHERE user_id = ? AND device_id = ? AND pos <= ?)`, userID, deviceID, ack).Scan(&pending); err != nil {
			return nil, err
		}
		if pending {
			if _, err := db.w.ExecContext(ctx, `DELETE FROM to_device WHERE user_id = ? AND device_id = ? AND pos <= ?`, userID, deviceID, ack); err != nil {
				return nil, err
			}
		}
	}
	rows, err := db.r.QueryContext(ctx, `SELECT pos, json FROM to_device WHERE user_id = ? AND device_id = ? AND pos > ? AND pos <= ? ORDER BY pos LIMIT ?`, userID, deviceID, after, upto, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.ToDeviceMessage
	for rows.Next() {
		var m store.ToDeviceMessage
		var j []byte
		if err := rows.Scan(&m.Pos, &j); err != nil {
			return nil, err
		}
		m.JSON = j
		out = append(out, m)
	}
	return out, rows.Err()
}
