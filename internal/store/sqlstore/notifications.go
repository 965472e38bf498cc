package sqlstore

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"conclave/internal/store"
)

// maxUnreadRows bounds the notifications one unread count reads per room:
// past it the counts stop growing (a badge of 10,000 is as good as more).
const maxUnreadRows = 10_000

// InsertPushActions writes e's notifications at the event's position pos,
// inside the event's transaction. With array parameters (PostgreSQL) it is
// one statement whatever the number of recipients; otherwise one prepared
// statement per row, which SQLite runs in microseconds.
func InsertPushActions(ctx context.Context, tx Querier, arrays bool, e *store.NewEvent, pos int64) error {
	if len(e.Push) == 0 || pos <= 0 {
		return nil
	}
	if arrays {
		users := make([]string, len(e.Push))
		threads := make([]string, len(e.Push))
		hl := make([]int64, len(e.Push))
		acts := make([]string, len(e.Push))
		for i, a := range e.Push {
			users[i], threads[i], acts[i] = a.UserID, a.ThreadID, string(a.Actions)
			if a.Highlight {
				hl[i] = 1
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO event_push_actions (user_id, pos, room_id, event_id, thread_id, highlight, actions, ts)
			SELECT u, ?, ?, ?, t, h, a, ? FROM unnest(?::text[], ?::text[], ?::int[], ?::text[]) AS x(u, t, h, a)
			ON CONFLICT DO NOTHING`, pos, e.RoomID, e.EventID, e.OriginServerTS, users, threads, hl, acts)
		return err
	}
	// Rows go in chunks whose sizes are powers of two, largest first: a
	// few statements per event, and few statement texts for the cache.
	for rest := e.Push; len(rest) > 0; {
		n := maxPushChunk
		for n > len(rest) {
			n /= 2
		}
		args := make([]any, 0, n*4+4)
		args = append(args, pos, e.RoomID, e.EventID, e.OriginServerTS)
		for _, a := range rest[:n] {
			args = append(args, a.UserID, a.ThreadID, boolInt(a.Highlight), string(a.Actions))
		}
		if _, err := tx.Exec(ctx, pushInsertSQL(n), args...); err != nil {
			return err
		}
		rest = rest[n:]
	}
	return nil
}

// maxPushChunk rows per INSERT (4 parameters each, well below SQLite's
// limit); a power of two.
const maxPushChunk = 128

var pushInserts sync.Map // rows → statement text

// pushInsertSQL is the multi-row INSERT of n notifications: ?1..?4 are the
// event's position, room, ID and timestamp; each row adds its own four.
func pushInsertSQL(n int) string {
	if q, ok := pushInserts.Load(n); ok {
		return q.(string)
	}
	var b strings.Builder
	b.WriteString(`INSERT INTO event_push_actions (user_id, pos, room_id, event_id, thread_id, highlight, actions, ts) VALUES `)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "(?%d, ?1, ?2, ?3, ?%d, ?%d, ?%d, ?4)", 5+4*i, 6+4*i, 7+4*i, 8+4*i)
	}
	b.WriteString(" ON CONFLICT DO NOTHING")
	q := b.String()
	pushInserts.Store(n, q)
	return q
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// readPointsSQL ($1 room, $2 user) lists the user's read points in the
// room: per receipt thread (” = unthreaded) the position of the newest
// receipted event, and, as thread '-', the user's membership; with the
// newest stream position among those rows, a marker for caches.
const readPointsSQL = `SELECT r.thread_id, max(e.pos), max(r.pos) FROM receipts r JOIN events e ON e.event_id = r.event_id
		WHERE r.room_id = ? AND r.user_id = ? AND r.type IN ('m.read', 'm.read.private') GROUP BY r.thread_id
	UNION ALL SELECT '-', pos, pos FROM memberships WHERE room_id = ? AND user_id = ?`

// unreadSQL reads, in one query, the read points (kind 0: readPointsSQL's
// rows) and the user's notifications in the range after the unthreaded
// read point (kind 1: thread, position, highlight), newest first and
// bounded.
const unreadSQL = `WITH rp (t, p, m) AS (` + readPointsSQL + `)
	SELECT 0, t, p, m FROM rp
	UNION ALL SELECT * FROM (SELECT 1, n.thread_id, n.pos, n.highlight FROM event_push_actions n
		WHERE n.user_id = ? AND n.room_id = ? AND n.pos > ? AND n.pos <= ?
		AND n.pos > (SELECT coalesce(max(p), 0) FROM rp WHERE t IN ('', '-'))
		ORDER BY n.pos DESC LIMIT ?) x`

// UnreadCounts implements store.SyncQueries (Synapse's rules: an
// unthreaded receipt covers every thread, a threaded one its thread).
func (s *Shared) UnreadCounts(ctx context.Context, roomID, userID string, since, upto int64) (store.Unread, error) {
	rows, err := s.b.Read().Query(ctx, unreadSQL, roomID, userID, roomID, userID, userID, roomID, since, upto, maxUnreadRows)
	if err != nil {
		return store.Unread{}, err
	}
	defer rows.Close()
	var u store.Unread
	perThread := map[string]int64{}
	type notif struct {
		thread string
		pos    int64
		hl     bool
	}
	var ns []notif
	for rows.Next() {
		var kind int
		var thread string
		var a, b int64
		if err := rows.Scan(&kind, &thread, &a, &b); err != nil {
			return u, err
		}
		if kind == 1 {
			ns = append(ns, notif{thread, a, b != 0})
			continue
		}
		u.ReadPos = max(u.ReadPos, b)
		if thread != "" && thread != "-" {
			perThread[thread] = a
		}
	}
	if err := rows.Err(); err != nil {
		return u, err
	}
	for _, n := range ns {
		if n.pos <= perThread[n.thread] {
			continue
		}
		if u.Threads == nil {
			u.Threads = map[string]store.ThreadCounts{}
		}
		c := u.Threads[n.thread]
		c.Notifications++
		if n.hl {
			c.Highlights++
		}
		u.Threads[n.thread] = c
	}
	return u, nil
}

// NotificationsOf implements store.Notifications.
func (s *Shared) NotificationsOf(ctx context.Context, userID string, before int64, limit int, onlyHighlight bool) ([]store.Notification, error) {
	var b strings.Builder
	b.WriteString(`SELECT n.pos, n.room_id, n.event_id, n.thread_id, n.highlight, n.actions, n.ts FROM event_push_actions n WHERE n.user_id = ?`)
	args := []any{userID}
	if before > 0 {
		b.WriteString(` AND n.pos < ?`)
		args = append(args, before)
	}
	if onlyHighlight {
		b.WriteString(` AND n.highlight = 1`)
	}
	b.WriteString(` ORDER BY n.pos DESC LIMIT ?`)
	args = append(args, limit)
	rows, err := s.b.Read().Query(ctx, b.String(), args...)
	out, err := collect(rows, err, func(r Rows, n *store.Notification) error {
		var hl int64
		var acts string
		err := r.Scan(&n.Pos, &n.RoomID, &n.EventID, &n.ThreadID, &hl, &acts, &n.TS)
		n.UserID, n.Highlight, n.Actions = userID, hl != 0, []byte(acts)
		return err
	})
	if err != nil {
		return nil, err
	}
	// read: the room's read points cover the event (one query per room).
	points := map[string]map[string]int64{}
	for i := range out {
		n := &out[i]
		p, ok := points[n.RoomID]
		if !ok {
			if p, err = s.readPoints(ctx, n.RoomID, userID); err != nil {
				return nil, err
			}
			points[n.RoomID] = p
		}
		n.Read = n.Pos <= p[""] || n.Pos <= p[n.ThreadID]
	}
	return out, nil
}

// readPoints returns the user's read points in a room by receipt thread
// ("" for unthreaded receipts, raised to the membership's position).
func (s *Shared) readPoints(ctx context.Context, roomID, userID string) (map[string]int64, error) {
	rows, err := s.b.Read().Query(ctx, readPointsSQL, roomID, userID, roomID, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	p := map[string]int64{}
	for rows.Next() {
		var thread string
		var evPos, mark int64
		if err := rows.Scan(&thread, &evPos, &mark); err != nil {
			return nil, err
		}
		if thread == "-" {
			thread = ""
		}
		p[thread] = max(p[thread], evPos)
	}
	return p, rows.Err()
}
