package store

import "context"

// DirectoryEntry is one user found by a user directory search.
type DirectoryEntry struct {
	UserID      string
	DisplayName string
	AvatarURL   string
}

// Directory answers the membership questions the smaller Client-Server
// modules ask (user directory, typing, receipts, presence visibility), and
// looks up single receipts.
type Directory interface {
	// SearchUserDirectory returns at most limit users whose ID or display
	// name contains term (case-insensitively for ASCII) and who are the
	// searcher, share a joined room with the searcher, or are joined to a
	// public room. Ordered by user ID.
	SearchUserDirectory(ctx context.Context, searcher, term string, limit int) ([]DirectoryEntry, error)
	// MembershipOf returns the user's current membership in the room ("" if none).
	MembershipOf(ctx context.Context, roomID, userID string) (string, error)
	// SharesRoom reports whether both users are joined to a common room.
	SharesRoom(ctx context.Context, a, b string) (bool, error)
	// GetReceipt returns one stored receipt (ErrNotFound if none).
	GetReceipt(ctx context.Context, roomID, userID, typ, threadID string) (*Receipt, error)
}
