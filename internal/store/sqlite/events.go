package sqlite

import (
	"context"
	"database/sql"
	"math"
	"strings"

	"conclave/internal/store"
)

const eventColumns = `e.pos, e.event_id, e.room_id, e.json, e.redacted_by, e.replaces_state, e.sender_device, e.txn_id, e.membership, e.type, e.state_key, e.sender`

func scanEvent(rows *sql.Rows, ev *store.StoredEvent) error {
	var sk sql.NullString
	if err := rows.Scan(&ev.Pos, &ev.EventID, &ev.RoomID, &ev.JSON, &ev.RedactedBy, &ev.ReplacesState, &ev.SenderDevice, &ev.TxnID, &ev.Membership, &ev.Type, &sk, &ev.Sender); err != nil {
		return err
	}
	if sk.Valid {
		s := sk.String
		ev.StateKey = &s
	}
	return nil
}

func (db *DB) queryEvents(ctx context.Context, q queryer, query string, args ...any) ([]store.StoredEvent, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.StoredEvent
	for rows.Next() {
		var ev store.StoredEvent
		if err := scanEvent(rows, &ev); err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	return out, rows.Err()
}

func (db *DB) GetEvent(ctx context.Context, eventID string) (*store.StoredEvent, error) {
	evs, err := db.queryEvents(ctx, db.r, `SELECT `+eventColumns+` FROM events e WHERE e.event_id = ? AND e.kind IN (0, 4)`, eventID)
	if err != nil {
		return nil, err
	}
	if len(evs) == 0 {
		return nil, store.ErrNotFound
	}
	return &evs[0], nil
}

// maxInArgs bounds the size of one IN (...) list; longer lists are chunked.
const maxInArgs = 500

func (db *DB) GetEvents(ctx context.Context, eventIDs []string) ([]store.StoredEvent, error) {
	var out []store.StoredEvent
	for len(eventIDs) > 0 {
		n := min(len(eventIDs), maxInArgs)
		evs, err := db.queryEvents(ctx, db.r, `SELECT `+eventColumns+` FROM events e WHERE e.event_id IN (`+placeholders(n)+`) AND e.kind IN (0, 4)`, stringArgs(eventIDs[:n])...)
		if err != nil {
			return nil, err
		}
		out = append(out, evs...)
		eventIDs = eventIDs[n:]
	}
	return out, nil
}

func (db *DB) EventByTxn(ctx context.Context, userID, deviceID, roomID, txnID string) (string, error) {
	var id string
	err := db.r.QueryRowContext(ctx, `SELECT event_id FROM txns WHERE user_id = ? AND device_id = ? AND room_id = ? AND txn_id = ?`, userID, deviceID, roomID, txnID).Scan(&id)
	return id, notFound(err)
}

func (db *DB) StateAt(ctx context.Context, roomID string, pos int64) ([]store.StoredEvent, error) {
	// The room's state as of pos is its current state right after its
	// newest event at or before pos (current_group). Events from before
	// state groups (migration 0013) have none: their rooms were linear, so
	// the newest state event at or before pos for each (type, state_key) is
	// the state then. A purged event (store.KindPurged, positive position:
	// it was a timeline event) keeps its current_group.
	var group int64
	err := db.r.QueryRowContext(ctx, `SELECT current_group FROM events WHERE kind IN (0, 5) AND pos > 0 AND room_id = ? AND pos <= ? ORDER BY pos DESC LIMIT 1`, roomID, pos).Scan(&group)
	if err == sql.ErrNoRows {
		return db.stateBeforeFirst(ctx, roomID, pos)
	}
	if err != nil {
		return nil, err
	}
	if group != 0 {
		return db.queryEvents(ctx, db.r, stateGroupSQL, group)
	}
	return db.queryEvents(ctx, db.r, `SELECT `+eventColumns+` FROM events e
		JOIN (SELECT max(pos) AS pos FROM events WHERE room_id = ? AND state_key IS NOT NULL AND pos <= ? AND kind = 0 GROUP BY type, state_key) m ON m.pos = e.pos`,
		roomID, pos)
}

// stateBeforeFirst is the state before the room's first event after pos,
// for a pos before the room's first event here: a room joined over
// federation starts with the join, whose state before came from another
// server (its state group, less the event itself).
func (db *DB) stateBeforeFirst(ctx context.Context, roomID string, pos int64) ([]store.StoredEvent, error) {
	var group int64
	var id, replaces string
	var isState bool
	err := db.r.QueryRowContext(ctx, `SELECT state_group, event_id, state_key IS NOT NULL, replaces_state FROM events WHERE kind IN (0, 5) AND pos > 0 AND room_id = ? AND pos > ? ORDER BY pos LIMIT 1`, roomID, pos).Scan(&group, &id, &isState, &replaces)
	if err == sql.ErrNoRows || (err == nil && group == 0) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	st, err := db.queryEvents(ctx, db.r, stateGroupSQL, group)
	if err != nil || !isState {
		return st, err
	}
	out := st[:0]
	for _, e := range st {
		if e.EventID != id {
			out = append(out, e)
		}
	}
	if replaces != "" {
		prev, err := db.queryEvents(ctx, db.r, `SELECT `+eventColumns+` FROM events e WHERE e.event_id = ?`, replaces)
		if err != nil {
			return nil, err
		}
		out = append(out, prev...)
	}
	return out, nil
}

// stateGroupSQL (group ID) reads the state of a group: its chain of deltas
// back to the snapshot (at most store.MaxStateGroupChain groups), the
// nearest entry of each (type, state_key) winning; a removal (an empty event_id) joins no
// event and so drops out. Ordered by position, as the state was written.
const stateGroupSQL = `WITH RECURSIVE chain(id, prev, n) AS (
		SELECT id, prev_id, 0 FROM state_groups WHERE id = ?
		UNION ALL
		SELECT g.id, g.prev_id, c.n + 1 FROM chain c JOIN state_groups g ON g.id = c.prev WHERE c.prev <> 0 AND c.n < 1000
	)
	SELECT ` + eventColumns + ` FROM (
		SELECT x.event_id, row_number() OVER (PARTITION BY x.type, x.state_key ORDER BY c.n) AS rn
		FROM chain c JOIN state_group_entries x ON x.group_id = c.id
	) s JOIN events e ON e.event_id = s.event_id WHERE s.rn = 1 ORDER BY e.pos`

func (db *DB) RoomEvents(ctx context.Context, q store.RoomEventsQuery) ([]store.StoredEvent, error) {
	var b strings.Builder
	args := []any{q.RoomID}
	if q.WithBackfilled {
		from := ` FROM events e`
		if q.Topological {
			// The planner would take the position index for the position
			// bounds and sort the whole room.
			from = ` FROM events e INDEXED BY events_room_depth`
		}
		b.WriteString(`SELECT ` + eventColumns + from + ` WHERE e.room_id = ? AND e.kind IN (0, 4)`)
		if q.After != math.MinInt64 {
			b.WriteString(` AND e.pos > ?`)
			args = append(args, q.After)
		}
		if q.Before != math.MaxInt64 {
			b.WriteString(` AND e.pos < ?`)
			args = append(args, q.Before)
		}
	} else {
		b.WriteString(`SELECT ` + eventColumns + ` FROM events e WHERE e.room_id = ? AND e.kind = 0`)
	}
	if q.After > 0 && !q.WithBackfilled {
		b.WriteString(` AND e.pos > ?`)
		args = append(args, q.After)
	}
	if q.Before > 0 && !q.WithBackfilled {
		b.WriteString(` AND e.pos < ?`)
		args = append(args, q.Before)
	}
	inList := func(col string, vals []string, not bool) {
		if len(vals) == 0 {
			return
		}
		op := " IN "
		if not {
			op = " NOT IN "
		}
		b.WriteString(" AND " + col + op + "(" + placeholders(len(vals)) + ")")
		args = append(args, stringArgs(vals)...)
	}
	// Types may use a trailing * wildcard (filters); those go through LIKE.
	typeClause(&b, &args, q.Types, false)
	typeClause(&b, &args, q.NotTypes, true)
	inList("e.sender", q.Senders, false)
	inList("e.sender", q.NotSenders, true)
	if q.ContainsURL != nil {
		b.WriteString(` AND e.contains_url = ?`)
		args = append(args, boolInt(*q.ContainsURL))
	}
	if q.WithBackfilled && q.AfterTopo != nil {
		b.WriteString(` AND (e.depth, e.pos) > (?, ?)`)
		args = append(args, q.AfterTopo.Depth, q.AfterTopo.Pos)
	}
	if q.WithBackfilled && q.BeforeTopo != nil {
		b.WriteString(` AND (e.depth, e.pos) < (?, ?)`)
		args = append(args, q.BeforeTopo.Depth, q.BeforeTopo.Pos)
	}
	switch {
	case q.WithBackfilled && q.Topological && q.Backwards:
		b.WriteString(` ORDER BY e.depth DESC, e.pos DESC`)
	case q.WithBackfilled && q.Topological:
		b.WriteString(` ORDER BY e.depth ASC, e.pos ASC`)
	case q.Backwards:
		b.WriteString(` ORDER BY e.pos DESC`)
	default:
		b.WriteString(` ORDER BY e.pos ASC`)
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 10
	}
	b.WriteString(` LIMIT ?`)
	args = append(args, limit)
	return db.queryEvents(ctx, db.r, b.String(), args...)
}

func typeClause(b *strings.Builder, args *[]any, types []string, not bool) {
	if len(types) == 0 {
		return
	}
	if not {
		b.WriteString(" AND NOT (")
	} else {
		b.WriteString(" AND (")
	}
	for i, t := range types {
		if i > 0 {
			b.WriteString(" OR ")
		}
		if p, ok := strings.CutSuffix(t, "*"); ok {
			// A prefix test, not LIKE: SQLite's LIKE ignores ASCII case,
			// and event types are case-sensitive.
			b.WriteString(`substr(e.type, 1, length(?)) = ?`)
			*args = append(*args, p, p)
		} else {
			b.WriteString("e.type = ?")
			*args = append(*args, t)
		}
	}
	b.WriteString(")")
}

func (db *DB) UserMemberships(ctx context.Context, userID string) ([]store.Membership, error) {
	return queryMemberships(ctx, db.r, `SELECT room_id, user_id, membership, event_id, pos, forgotten FROM memberships WHERE user_id = ?`, userID)
}

func (db *DB) RoomMembers(ctx context.Context, roomID string) ([]store.Membership, error) {
	return queryMemberships(ctx, db.r, `SELECT room_id, user_id, membership, event_id, pos, forgotten FROM memberships WHERE room_id = ?`, roomID)
}

func (db *DB) JoinedCoMembers(ctx context.Context, userID string) ([]string, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT DISTINCT o.user_id FROM memberships m JOIN memberships o ON o.room_id = m.room_id WHERE m.user_id = ? AND m.membership = 'join' AND o.membership = 'join'`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

func queryMemberships(ctx context.Context, q queryer, query string, args ...any) ([]store.Membership, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Membership
	for rows.Next() {
		var m store.Membership
		if err := rows.Scan(&m.RoomID, &m.UserID, &m.Membership, &m.EventID, &m.Pos, &m.Forgotten); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

func (db *DB) StateEventsOf(ctx context.Context, roomID, typ, stateKey string) ([]store.StoredEvent, error) {
	return db.queryEvents(ctx, db.r, `SELECT `+eventColumns+` FROM events e WHERE e.room_id = ? AND e.type = ? AND e.state_key = ? AND e.kind IN (0, 4) ORDER BY e.pos`, roomID, typ, stateKey)
}
