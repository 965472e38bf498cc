package store

import "context"

// Profile is a user's global profile.
type Profile struct {
	UserID      string
	DisplayName string
	AvatarURL   string
}

// Profiles keeps global profiles; member events copy them on join.
type Profiles interface {
	// GetProfile returns the profile (ErrNotFound if the user has none).
	GetProfile(ctx context.Context, userID string) (*Profile, error)
	SetDisplayName(ctx context.Context, userID, name string) error
	SetAvatarURL(ctx context.Context, userID, url string) error
}
