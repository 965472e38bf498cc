package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"strings"

	"conclave/internal/store"
)

// likeEscaper escapes LIKE metacharacters for ESCAPE '\'.
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

func (s *Shared) SearchUserDirectory(ctx context.Context, searcher, term string, limit int) ([]store.DirectoryEntry, error) {
	pattern := "%" + likeEscaper.Replace(term) + "%"
	// The profile of a user of another server (no users row) is the one
	// their latest join event carries (content.displayname, avatar_url):
	// this server knows no other.
	remote := func(key string) string {
		return `(SELECT ` + s.d.ContentField("e.json", key) + ` FROM memberships m JOIN events e ON e.event_id = m.event_id
			WHERE m.user_id = v.user_id AND m.membership = 'join' ORDER BY m.pos DESC LIMIT 1)`
	}
	// visible: users sharing a joined room with the searcher, and users
	// joined to a public room; never the searcher (as Synapse: Complement
	// TestRoomSpecificUsername*). lower(…) LIKE lower(…): case-insensitive
	// on PostgreSQL too, like SQLite's LIKE.
	rows, err := s.b.Read().Query(ctx, `
		WITH visible(user_id) AS (
			SELECT DISTINCT m.user_id FROM memberships m
			WHERE m.membership = 'join' AND (
				m.room_id IN (SELECT room_id FROM memberships WHERE user_id = ?1 AND membership = 'join')
				OR m.room_id IN (SELECT room_id FROM rooms WHERE public = true))
		), named(user_id, displayname, avatar_url, deactivated) AS (
			SELECT v.user_id,
				CASE WHEN u.user_id IS NULL THEN coalesce(`+remote("displayname")+`, '') ELSE coalesce(p.displayname, '') END,
				CASE WHEN u.user_id IS NULL THEN coalesce(`+remote("avatar_url")+`, '') ELSE coalesce(p.avatar_url, '') END,
				coalesce(u.deactivated, false)
			FROM visible v
			LEFT JOIN profiles p ON p.user_id = v.user_id
			LEFT JOIN users u ON u.user_id = v.user_id
		)
		SELECT user_id, displayname, avatar_url FROM named
		WHERE NOT deactivated AND user_id <> ?1
		  AND (lower(user_id) LIKE lower(?2) ESCAPE '\' OR lower(displayname) LIKE lower(?2) ESCAPE '\')
		ORDER BY user_id`+s.d.Collate+`
		LIMIT ?3`, searcher, pattern, limit)
	return collect(rows, err, func(r Rows, e *store.DirectoryEntry) error {
		return r.Scan(&e.UserID, &e.DisplayName, &e.AvatarURL)
	})
}

func (s *Shared) MembershipOf(ctx context.Context, roomID, userID string) (string, error) {
	var m string
	err := s.b.Read().QueryRow(ctx, `SELECT membership FROM memberships WHERE room_id = ? AND user_id = ?`, roomID, userID).Scan(&m)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return m, err
}

func (s *Shared) SharesRoom(ctx context.Context, a, b string) (bool, error) {
	var ok bool
	err := s.b.Read().QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM memberships x JOIN memberships y ON y.room_id = x.room_id
		WHERE x.user_id = ? AND x.membership = 'join' AND y.user_id = ? AND y.membership = 'join')`, a, b).Scan(&ok)
	return ok, err
}

func (s *Shared) GetReceipt(ctx context.Context, roomID, userID, typ, threadID string) (*store.Receipt, error) {
	r := store.Receipt{RoomID: roomID, UserID: userID, Type: typ, ThreadID: threadID}
	err := s.b.Read().QueryRow(ctx, `SELECT event_id, ts, pos FROM receipts WHERE room_id = ? AND user_id = ? AND type = ? AND thread_id = ?`,
		roomID, userID, typ, threadID).Scan(&r.EventID, &r.TS, &r.Pos)
	if err != nil {
		return nil, notFound(err)
	}
	return &r, nil
}
