package postgres

import (
	"context"

	"conclave/internal/store"
)

func (db *DB) GetProfile(ctx context.Context, userID string) (*store.Profile, error) {
	p := store.Profile{UserID: userID}
	err := db.pool.QueryRow(ctx, `SELECT displayname, avatar_url FROM profiles WHERE user_id = $1`, userID).Scan(&p.DisplayName, &p.AvatarURL)
	if err != nil {
		return nil, notFound(err)
	}
	return &p, nil
}

func (db *DB) SetDisplayName(ctx context.Context, userID, name string) error {
	_, err := db.pool.Exec(ctx, `INSERT INTO profiles (user_id, displayname) VALUES ($1, $2) ON CONFLICT (user_id) DO UPDATE SET displayname = excluded.displayname`, userID, name)
	return err
}

func (db *DB) SetAvatarURL(ctx context.Context, userID, url string) error {
	_, err := db.pool.Exec(ctx, `INSERT INTO profiles (user_id, avatar_url) VALUES ($1, $2) ON CONFLICT (user_id) DO UPDATE SET avatar_url = excluded.avatar_url`, userID, url)
	return err
}
