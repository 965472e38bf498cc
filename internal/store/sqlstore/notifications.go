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
// inside the event's transaction: its common row (e.PushCommon) and the
// users' own rows (e.PushOwn then; else every row of e.Push). With array
// parameters (PostgreSQL) the users' rows are one statement whatever their
// number; otherwise multi-row INSERTs.
func InsertPushActions(ctx context.Context, tx Querier, arrays bool, e *store.NewEvent, pos int64) error {
	if pos <= 0 {
		return nil
	}
	own := e.Push
	if c := e.PushCommon; c != nil {
		own = e.PushOwn
		if _, err := tx.Exec(ctx, `INSERT INTO event_notifs (room_id, pos, event_id, sender, thread_id, highlight, actions, ts)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
			e.RoomID, pos, e.EventID, e.Sender, c.ThreadID, boolInt(c.Highlight), string(c.Actions), e.OriginServerTS); err != nil {
			return err
		}
	}
	if len(own) == 0 {
		return nil
	}
	if arrays {
		users, threads, hl, acts, notify := PushActionArrays(own)
		_, err := tx.Exec(ctx, `INSERT INTO event_push_actions (user_id, pos, room_id, event_id, thread_id, highlight, actions, ts, notify)
			SELECT u, ?, ?, ?, t, h, a, ?, n FROM unnest(?::text[], ?::text[], ?::int[], ?::text[], ?::int[]) AS x(u, t, h, a, n)
			ON CONFLICT DO NOTHING`, pos, e.RoomID, e.EventID, e.OriginServerTS, users, threads, hl, acts, notify)
		return err
	}
	// Rows go in chunks whose sizes are powers of two, largest first: a
	// few statements per event, and few statement texts for the cache.
	for rest := own; len(rest) > 0; {
		n := maxPushChunk
		for n > len(rest) {
			n /= 2
		}
		args := make([]any, 0, n*5+4)
		args = append(args, pos, e.RoomID, e.EventID, e.OriginServerTS)
		for _, a := range rest[:n] {
			args = append(args, a.UserID, a.ThreadID, boolInt(a.Highlight), string(a.Actions), boolInt(a.Actions != nil))
		}
		if _, err := tx.Exec(ctx, pushInsertSQL(n), args...); err != nil {
			return err
		}
		rest = rest[n:]
	}
	return nil
}

// PushActionArrays spreads users' notification rows into one array per
// column, for unnest (PostgreSQL); notify is 0 for a row whose Actions is
// nil (the user is not notified: see store.NewEvent.PushOwn).
func PushActionArrays(push []store.PushAction) (users, threads []string, hl []int32, acts []string, notify []int32) {
	users, threads, acts = make([]string, len(push)), make([]string, len(push)), make([]string, len(push))
	hl, notify = make([]int32, len(push)), make([]int32, len(push))
	for i, a := range push {
		users[i], threads[i], acts[i] = a.UserID, a.ThreadID, string(a.Actions)
		if a.Highlight {
			hl[i] = 1
		}
		if a.Actions != nil {
			notify[i] = 1
		}
	}
	return users, threads, hl, acts, notify
}

// maxPushChunk rows per INSERT (5 parameters each, well below SQLite's
// limit); a power of two.
const maxPushChunk = 128

var pushInserts sync.Map // rows → statement text

// pushInsertSQL is the multi-row INSERT of n notifications: ?1..?4 are the
// event's position, room, ID and timestamp; each row adds its own five.
func pushInsertSQL(n int) string {
	if q, ok := pushInserts.Load(n); ok {
		return q.(string)
	}
	var b strings.Builder
	b.WriteString(`INSERT INTO event_push_actions (user_id, pos, room_id, event_id, thread_id, highlight, actions, ts, notify) VALUES `)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "(?%d, ?1, ?2, ?3, ?%d, ?%d, ?%d, ?4, ?%d)", 5+5*i, 6+5*i, 7+5*i, 8+5*i, 9+5*i)
	}
	b.WriteString(" ON CONFLICT DO NOTHING")
	q := b.String()
	pushInserts.Store(n, q)
	return q
}

// BoolInt is 1 for true, 0 for false (integer flag columns).
func BoolInt(b bool) int64 { return boolInt(b) }

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
// bounded: their own rows, and the event's common rows (event_notifs) where
// they have none — they count only while the user is joined, and after
// the read point, which is never before their latest membership, the user
// was joined for every event if they are joined now.
const unreadSQL = `WITH rp (t, p, m) AS (` + readPointsSQL + `)
	SELECT 0, t, p, m FROM rp
	UNION ALL SELECT * FROM (SELECT 1, n.thread_id, n.pos, n.highlight FROM event_push_actions n
		WHERE n.user_id = ? AND n.room_id = ? AND n.pos > ? AND n.pos <= ? AND n.notify = 1
		AND n.pos > (SELECT coalesce(max(p), 0) FROM rp WHERE t IN ('', '-'))
		ORDER BY n.pos DESC LIMIT ?) x
	UNION ALL SELECT * FROM (SELECT 1, c.thread_id, c.pos, c.highlight FROM event_notifs c
		WHERE c.room_id = ? AND c.pos > ? AND c.pos <= ? AND c.sender <> ?
		AND c.pos > (SELECT coalesce(max(p), 0) FROM rp WHERE t IN ('', '-'))
		AND EXISTS (SELECT 1 FROM memberships m WHERE m.room_id = c.room_id AND m.user_id = ? AND m.membership = 'join')
		AND NOT EXISTS (SELECT 1 FROM event_push_actions o WHERE o.user_id = ? AND o.room_id = c.room_id AND o.pos = c.pos)
		ORDER BY c.pos DESC LIMIT ?) y`

// commonForUserSQL selects the common notifications (event_notifs c) that
// apply to the user of the memberships row m: they were joined before the
// event (by stream order) and are not its sender, and have no row of their
// own for it. While joined, every event after their latest membership
// applies; an earlier event applies when their membership event before it
// made them join (a user who joined later, or who had left then, is not
// counted: they were no member).
const commonForUserSQL = `c.room_id = m.room_id AND c.sender <> m.user_id
	AND ((m.membership = 'join' AND c.pos > m.pos) OR (c.pos < m.pos AND
		(SELECT e.membership FROM events e WHERE e.room_id = c.room_id AND e.type = 'm.room.member' AND e.state_key = m.user_id
			AND e.pos > 0 AND e.pos < c.pos ORDER BY e.pos DESC LIMIT 1) = 'join'))
	AND NOT EXISTS (SELECT 1 FROM event_push_actions o WHERE o.user_id = m.user_id AND o.room_id = c.room_id AND o.pos = c.pos)`

// notificationsSQL lists the user's notifications (their own rows and the
// common rows that apply to them) matching cond on pos and highlight (the
// same text for both, "?" parameters twice), ordered by order, at most
// limit; columns pos, room_id, event_id, thread_id, highlight, actions, ts.
func notificationsSQL(cond, order string) string {
	return `SELECT * FROM (
		SELECT n.pos, n.room_id, n.event_id, n.thread_id, n.highlight, n.actions, n.ts FROM event_push_actions n
			WHERE n.user_id = ? AND n.notify = 1` + strings.ReplaceAll(cond, "x.", "n.") + `
		UNION ALL
		SELECT c.pos, c.room_id, c.event_id, c.thread_id, c.highlight, c.actions, c.ts FROM memberships m JOIN event_notifs c ON c.room_id = m.room_id
			WHERE m.user_id = ?` + strings.ReplaceAll(cond, "x.", "c.") + ` AND ` + commonForUserSQL + `
	) u ORDER BY pos ` + order + ` LIMIT ?`
}

// UnreadCounts implements store.SyncQueries (Synapse's rules: an
// unthreaded receipt covers every thread, a threaded one its thread).
func (s *Shared) UnreadCounts(ctx context.Context, roomID, userID string, since, upto int64) (store.Unread, error) {
	rows, err := s.b.Read().Query(ctx, unreadSQL, roomID, userID, roomID, userID, userID, roomID, since, upto, maxUnreadRows,
		roomID, since, upto, userID, userID, userID, maxUnreadRows)
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
	var cond string
	var args []any
	if before > 0 {
		cond += ` AND x.pos < ?`
		args = append(args, before)
	}
	if onlyHighlight {
		cond += ` AND x.highlight = 1`
	}
	all := append(append(append([]any{userID}, args...), userID), args...)
	rows, err := s.b.Read().Query(ctx, notificationsSQL(cond, "DESC"), append(all, limit)...)
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

// readBySQL is true when the user u (an SQL expression) has read the
// notification at position x.pos of thread x.thread_id in room x.room_id:
// an unthreaded read receipt, one in the thread, or their latest
// membership is at or after it (the read points of unreadSQL).
func readBySQL(u string) string {
	return `(x.pos <= (SELECT coalesce(max(e.pos), 0) FROM receipts r JOIN events e ON e.event_id = r.event_id
			WHERE r.room_id = x.room_id AND r.user_id = ` + u + ` AND r.type IN ('m.read', 'm.read.private') AND r.thread_id IN ('', x.thread_id))
		OR x.pos <= (SELECT coalesce(max(mm.pos), 0) FROM memberships mm WHERE mm.room_id = x.room_id AND mm.user_id = ` + u + `))`
}

// commonFloorsSQL gives, per room with common rows, its floor: the first
// common row some local member still needs. For each local user joined to
// the room, that is the first common row after their unthreaded read point
// (the read point is never before their latest membership, so they were
// joined for every row after it) that applies to them — not their own
// event, no row of their own for it — and that no threaded receipt of theirs
// covers. Each member's search starts at their read point in the room's
// rows (the primary key) and mostly stops at the first row, so the cost is
// per member, not per member and row: the pass it replaced checked every
// member for every old row, every hour (Store/PruneBacklog in
// docs/benchmarks.md). A member who needs nothing has no first row; a
// room's floor is NULL when no member needs any row.
const commonFloorsSQL = `SELECT rp.room_id, min((SELECT x.pos FROM event_notifs x
		WHERE x.room_id = rp.room_id AND x.pos > rp.read_pos AND x.sender <> rp.user_id
		AND NOT EXISTS (SELECT 1 FROM event_push_actions o WHERE o.user_id = rp.user_id AND o.room_id = x.room_id AND o.pos = x.pos)
		AND NOT EXISTS (SELECT 1 FROM receipts r JOIN events e ON e.event_id = r.event_id
			WHERE r.room_id = x.room_id AND r.user_id = rp.user_id AND r.type IN ('m.read', 'm.read.private') AND r.thread_id = x.thread_id AND e.pos >= x.pos)
		ORDER BY x.pos LIMIT 1)) AS floor
	FROM (SELECT mr.room_id, mr.user_id, CASE WHEN mr.pos > mr.receipt THEN mr.pos ELSE mr.receipt END AS read_pos
		FROM (SELECT m.room_id, m.user_id, m.pos, (SELECT coalesce(max(e.pos), 0) FROM receipts r JOIN events e ON e.event_id = r.event_id
				WHERE r.room_id = m.room_id AND r.user_id = m.user_id AND r.type IN ('m.read', 'm.read.private') AND r.thread_id = '') AS receipt
			FROM memberships m JOIN users u ON u.user_id = m.user_id
			WHERE m.membership = 'join' AND EXISTS (SELECT 1 FROM event_notifs n WHERE n.room_id = m.room_id)) mr) rp
	GROUP BY rp.room_id`

// pruneCommonSQL deletes common rows ($1 readBefore, $2 allBefore, $3
// limit) once old and before their room's floor (commonFloorsSQL: read by
// every local user they apply to; users who joined or left later have a
// membership after them, which covers them), or in a room without a local
// member, or once older than allBefore.
//
// A row after a floor stays even if every member it applies to has read it
// (the member holding the floor back may be exempt from it: their own
// message, a row of their own): it goes once the floor passes it, or at
// allBefore. Keeping a row is never wrong; deleting one a member still
// needs would lower their unread count.
var pruneCommonSQL = `DELETE FROM event_notifs WHERE (room_id, pos) IN (SELECT x.room_id, x.pos FROM event_notifs x
	LEFT JOIN (` + commonFloorsSQL + `) f ON f.room_id = x.room_id
	WHERE x.ts < ? AND (x.ts < ? OR f.floor IS NULL OR x.pos < f.floor)
	LIMIT ?)`

// pruneOwnSQL deletes users' rows ($1 readBefore, $2 allBefore, $3 limit)
// whose event has no common row any more (while it has one, a user's row
// says how it does not apply to them) once old and read by the user, or
// older than allBefore, or saying "not notified".
var pruneOwnSQL = `DELETE FROM event_push_actions WHERE (user_id, room_id, pos) IN (SELECT x.user_id, x.room_id, x.pos FROM event_push_actions x
	WHERE x.ts < ? AND NOT EXISTS (SELECT 1 FROM event_notifs c WHERE c.room_id = x.room_id AND c.pos = x.pos)
	AND (x.ts < ? OR x.notify = 0 OR ` + readBySQL("x.user_id") + `)
	LIMIT ?)`

// PruneNotifications implements store.Notifications: common rows first,
// so that the users' rows they made meaningful go in the same call.
func (s *Shared) PruneNotifications(ctx context.Context, readBefore, allBefore int64, limit int) (int64, error) {
	allBefore = min(allBefore, readBefore)
	n, err := s.b.Write().Exec(ctx, pruneCommonSQL, readBefore, allBefore, limit)
	if err != nil || n >= int64(limit) {
		return n, err
	}
	m, err := s.b.Write().Exec(ctx, pruneOwnSQL, readBefore, allBefore, int64(limit)-n)
	return n + m, err
}
