package store

import "context"

// ServerNotices keeps, per user, the room server notices are sent to.
type ServerNotices interface {
	// NoticeRoom returns the user's server notice room (ErrNotFound if none).
	NoticeRoom(ctx context.Context, userID string) (string, error)
	// SetNoticeRoom records it.
	SetNoticeRoom(ctx context.Context, userID, roomID string) error
}
