package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"conclave/internal/store"
)

func (db *DB) SearchUserDirectory(ctx context.Context, searcher, term string, limit int) ([]store.DirectoryEntry, error) {
	// lower(…) LIKE lower(…): case-insensitive like SQLite's LIKE.
	pattern := "%" + likeEscaper.Replace(term) + "%"
	// visible: users sharing a joined room with the searcher, and users
	// joined to a public room; never the searcher (as Synapse: Complement
	// TestRoomSpecificUsername*).
	rows, err := db.pool.Query(ctx, `
		WITH visible(user_id) AS (
			SELECT DISTINCT m.user_id FROM memberships m
			WHERE m.membership = 'join' AND (
				m.room_id IN (SELECT room_id FROM memberships WHERE user_id = $1 AND membership = 'join')
				OR m.room_id IN (SELECT room_id FROM rooms WHERE public))
		)
		SELECT v.user_id, coalesce(p.displayname, ''), coalesce(p.avatar_url, '')
		FROM visible v
		LEFT JOIN profiles p ON p.user_id = v.user_id
		LEFT JOIN users u ON u.user_id = v.user_id
		WHERE NOT coalesce(u.deactivated, false) AND v.user_id <> $1
		  AND (lower(v.user_id) LIKE lower($2) ESCAPE '\' OR lower(coalesce(p.displayname, '')) LIKE lower($2) ESCAPE '\')
		ORDER BY v.user_id COLLATE "C"
		LIMIT $3`, searcher, pattern, limit)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.DirectoryEntry, error) {
		var e store.DirectoryEntry
		err := row.Scan(&e.UserID, &e.DisplayName, &e.AvatarURL)
		return e, err
	})
	if len(out) == 0 {
		out = nil
	}
	return out, err
}

func (db *DB) MembershipOf(ctx context.Context, roomID, userID string) (string, error) {
	var m string
	err := db.pool.QueryRow(ctx, `SELECT membership FROM memberships WHERE room_id = $1 AND user_id = $2`, roomID, userID).Scan(&m)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return m, err
}

func (db *DB) SharesRoom(ctx context.Context, a, b string) (bool, error) {
	var ok bool
	err := db.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM memberships x JOIN memberships y ON y.room_id = x.room_id
		WHERE x.user_id = $1 AND x.membership = 'join' AND y.user_id = $2 AND y.membership = 'join')`, a, b).Scan(&ok)
	return ok, err
}

func (db *DB) GetReceipt(ctx context.Context, roomID, userID, typ, threadID string) (*store.Receipt, error) {
	r := store.Receipt{RoomID: roomID, UserID: userID, Type: typ, ThreadID: threadID}
	err := db.pool.QueryRow(ctx, `SELECT event_id, ts, pos FROM receipts WHERE room_id = $1 AND user_id = $2 AND type = $3 AND thread_id = $4`,
		roomID, userID, typ, threadID).Scan(&r.EventID, &r.TS, &r.Pos)
	if err != nil {
		return nil, notFound(err)
	}
	return &r, nil
}
