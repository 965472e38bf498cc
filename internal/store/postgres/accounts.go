package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"conclave/internal/store"
)

// Transitional: the dehydrated-device code in keys.go deletes and creates
// devices; it moves to store/sqlstore with the keys area.

func insertToken(ctx context.Context, tx pgx.Tx, userID, deviceID string, tok store.NewToken, now int64) error {
	_, err := tx.Exec(ctx, `INSERT INTO access_tokens (token_hash, user_id, device_id, refresh_hash, expires_ts, created_ts) VALUES ($1, $2, $3, $4, $5, $6)`,
		tok.AccessHash, userID, deviceID, tok.RefreshHash, tok.ExpiresTS, now)
	if isConstraint(err) {
		return store.ErrConflict
	}
	return err
}

// deviceCleanups are run for every deleted device inside the deleting
// transaction, with $1 = user ID and $2 = device ID: the PostgreSQL twin of
// the SQLite store's list. Other parts of the store register theirs from an
// init() in their own file.
var deviceCleanups []string

func deleteDevicesTx(ctx context.Context, tx pgx.Tx, userID string, deviceIDs []string) error {
	for _, id := range deviceIDs {
		if _, err := tx.Exec(ctx, `DELETE FROM devices WHERE user_id = $1 AND device_id = $2`, userID, id); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2`, userID, id); err != nil {
			return err
		}
		for _, q := range deviceCleanups {
			if _, err := tx.Exec(ctx, q, userID, id); err != nil {
				return err
			}
		}
	}
	return nil
}

// Refresh tokens kept for a retry belong to their device and go with it.
func init() {
	deviceCleanups = append(deviceCleanups, `DELETE FROM superseded_refresh_tokens WHERE user_id = $1 AND device_id = $2`)
}

func init() {
	deviceCleanups = append(deviceCleanups, `DELETE FROM pushers WHERE user_id = $1 AND device_id = $2`)
}
