package sqlite

import (
	"context"
	"database/sql"

	"conclave/internal/store"
)

// Transitional: the dehydrated-device code in keys.go deletes and creates
// devices; it moves to store/sqlstore with the keys area.

func insertToken(ctx context.Context, tx *Tx, userID, deviceID string, tok store.NewToken, now int64) error {
	var refresh any
	if tok.RefreshHash != nil {
		refresh = tok.RefreshHash
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO access_tokens (token_hash, user_id, device_id, refresh_hash, expires_ts, created_ts) VALUES (?, ?, ?, ?, ?, ?)`,
		tok.AccessHash, userID, deviceID, refresh, tok.ExpiresTS, now)
	if isConstraint(err) {
		return store.ErrConflict
	}
	return err
}

// deviceCleanups are run for every deleted device inside the deleting
// transaction; other parts of the store (keys, to-device) register theirs.
var deviceCleanups []string

func deleteDevicesTx(ctx context.Context, tx *Tx, userID string, deviceIDs []string) error {
	for _, id := range deviceIDs {
		if _, err := tx.ExecContext(ctx, `DELETE FROM devices WHERE user_id = ? AND device_id = ?`, userID, id); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM access_tokens WHERE user_id = ? AND device_id = ?`, userID, id); err != nil {
			return err
		}
		for _, q := range deviceCleanups {
			if _, err := tx.ExecContext(ctx, q, userID, id); err != nil {
				return err
			}
		}
	}
	return nil
}

type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func queryStrings(ctx context.Context, q queryer, query string, args ...any) ([]string, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

func init() {
	deviceCleanups = append(deviceCleanups, `DELETE FROM pushers WHERE user_id = ? AND device_id = ?`)
}
