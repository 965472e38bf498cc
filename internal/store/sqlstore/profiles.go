package sqlstore

import (
	"context"

	"conclave/internal/store"
)

func (s *Shared) GetProfile(ctx context.Context, userID string) (*store.Profile, error) {
	p := store.Profile{UserID: userID}
	err := s.b.Read().QueryRow(ctx, `SELECT displayname, avatar_url FROM profiles WHERE user_id = ?`, userID).Scan(&p.DisplayName, &p.AvatarURL)
	if err != nil {
		return nil, notFound(err)
	}
	return &p, nil
}

func (s *Shared) SetDisplayName(ctx context.Context, userID, name string) error {
	_, err := s.b.Write().Exec(ctx, `INSERT INTO profiles (user_id, displayname) VALUES (?, ?) ON CONFLICT (user_id) DO UPDATE SET displayname = excluded.displayname`, userID, name)
	return err
}

func (s *Shared) SetAvatarURL(ctx context.Context, userID, url string) error {
	_, err := s.b.Write().Exec(ctx, `INSERT INTO profiles (user_id, avatar_url) VALUES (?, ?) ON CONFLICT (user_id) DO UPDATE SET avatar_url = excluded.avatar_url`, userID, url)
	return err
}
