package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"strings"

	"conclave/internal/store"
)

// likeEscaper escapes LIKE metacharacters for ESCAPE '\'.
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

func (db *DB) SearchUserDirectory(ctx context.Context, searcher, term string, limit int) ([]store.DirectoryEntry, error) {
	pattern := "%" + likeEscaper.Replace(term) + "%"
	// visible: users sharing a joined room with the searcher, and users
	// joined to a public room; never the searcher (as Synapse: Complement
	// TestRoomSpecificUsername*).
	rows, err := db.r.QueryContext(ctx, `
		WITH visible(user_id) AS (
			SELECT DISTINCT m.user_id FROM memberships m
			WHERE m.membership = 'join' AND (
				m.room_id IN (SELECT room_id FROM memberships WHERE user_id = ? AND membership = 'join')
				OR m.room_id IN (SELECT room_id FROM rooms WHERE public = 1))
		)
		SELECT v.user_id, coalesce(p.displayname, ''), coalesce(p.avatar_url, '')
		FROM visible v
		LEFT JOIN profiles p ON p.user_id = v.user_id
		LEFT JOIN users u ON u.user_id = v.user_id
		WHERE coalesce(u.deactivated, 0) = 0 AND v.user_id <> ?
		  AND (v.user_id LIKE ? ESCAPE '\' OR coalesce(p.displayname, '') LIKE ? ESCAPE '\')
		ORDER BY v.user_id
		LIMIT ?`, searcher, searcher, pattern, pattern, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.DirectoryEntry
	for rows.Next() {
		var e store.DirectoryEntry
		if err := rows.Scan(&e.UserID, &e.DisplayName, &e.AvatarURL); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

func (db *DB) MembershipOf(ctx context.Context, roomID, userID string) (string, error) {
	var m string
	err := db.r.QueryRowContext(ctx, `SELECT membership FROM memberships WHERE room_id = ? AND user_id = ?`, roomID, userID).Scan(&m)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return m, err
}

func (db *DB) SharesRoom(ctx context.Context, a, b string) (bool, error) {
	var ok bool
	err := db.r.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM memberships x JOIN memberships y ON y.room_id = x.room_id
		WHERE x.user_id = ? AND x.membership = 'join' AND y.user_id = ? AND y.membership = 'join')`, a, b).Scan(&ok)
	return ok, err
}

func (db *DB) GetReceipt(ctx context.Context, roomID, userID, typ, threadID string) (*store.Receipt, error) {
	r := store.Receipt{RoomID: roomID, UserID: userID, Type: typ, ThreadID: threadID}
	err := db.r.QueryRowContext(ctx, `SELECT event_id, ts, pos FROM receipts WHERE room_id = ? AND user_id = ? AND type = ? AND thread_id = ?`,
		roomID, userID, typ, threadID).Scan(&r.EventID, &r.TS, &r.Pos)
	if err != nil {
		return nil, notFound(err)
	}
	return &r, nil
}
