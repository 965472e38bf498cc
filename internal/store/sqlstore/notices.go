package sqlstore

import "context"

func (s *Shared) NoticeRoom(ctx context.Context, userID string) (string, error) {
	var roomID string
	err := s.b.Read().QueryRow(ctx, `SELECT room_id FROM server_notice_rooms WHERE user_id = ?`, userID).Scan(&roomID)
	return roomID, notFound(err)
}

func (s *Shared) SetNoticeRoom(ctx context.Context, userID, roomID string) error {
	_, err := s.b.Write().Exec(ctx, `INSERT INTO server_notice_rooms (user_id, room_id) VALUES (?, ?) ON CONFLICT (user_id) DO UPDATE SET room_id = excluded.room_id`, userID, roomID)
	return err
}
