package postgres

import (
	"context"
	"errors"
	"math"
	"strings"

	"github.com/jackc/pgx/v5"

	"conclave/internal/store"
)

const eventColumns = `e.pos, e.event_id, e.room_id, e.json, e.redacted_by, e.replaces_state, e.sender_device, e.txn_id, e.membership, e.type, e.state_key, e.sender`

func scanEvent(row pgx.CollectableRow) (store.StoredEvent, error) {
	var ev store.StoredEvent
	err := row.Scan(&ev.Pos, &ev.EventID, &ev.RoomID, &ev.JSON, &ev.RedactedBy, &ev.ReplacesState, &ev.SenderDevice, &ev.TxnID, &ev.Membership, &ev.Type, &ev.StateKey, &ev.Sender)
	return ev, err
}

func queryEvents(ctx context.Context, q querier, query string, args ...any) ([]store.StoredEvent, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, scanEvent)
	if len(out) == 0 {
		out = nil
	}
	return out, err
}

func (db *DB) GetEvent(ctx context.Context, eventID string) (*store.StoredEvent, error) {
	evs, err := queryEvents(ctx, db.pool, `SELECT `+eventColumns+` FROM events e WHERE e.event_id = $1 AND e.kind IN (0, 4)`, eventID)
	if err != nil {
		return nil, err
	}
	if len(evs) == 0 {
		return nil, store.ErrNotFound
	}
	return &evs[0], nil
}

// maxInArgs bounds the size of one array parameter; longer lists are chunked.
const maxInArgs = 1000

func (db *DB) GetEvents(ctx context.Context, eventIDs []string) ([]store.StoredEvent, error) {
	var out []store.StoredEvent
	for len(eventIDs) > 0 {
		n := min(len(eventIDs), maxInArgs)
		evs, err := queryEvents(ctx, db.pool, `SELECT `+eventColumns+` FROM events e WHERE e.event_id = ANY($1) AND e.kind IN (0, 4)`, eventIDs[:n])
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
	err := db.pool.QueryRow(ctx, `SELECT event_id FROM txns WHERE user_id = $1 AND device_id = $2 AND room_id = $3 AND txn_id = $4`, userID, deviceID, roomID, txnID).Scan(&id)
	return id, notFound(err)
}

func (db *DB) StateAt(ctx context.Context, roomID string, pos int64) ([]store.StoredEvent, error) {
	// The room's state as of pos is its current state right after its
	// newest event at or before pos (current_group). Events from before
	// state groups (migration 0013) have none: their rooms were linear, so
	// the newest state event at or before pos for each (type, state_key) is
	// the state then.
	// A purged event (store.KindPurged, positive position: it was a
	// timeline event) keeps its current_group.
	var group int64
	err := db.pool.QueryRow(ctx, `SELECT current_group FROM events WHERE kind IN (0, 5) AND pos > 0 AND room_id = $1 AND pos <= $2 ORDER BY pos DESC LIMIT 1`, roomID, pos).Scan(&group)
	if errors.Is(err, pgx.ErrNoRows) {
		return db.stateBeforeFirst(ctx, roomID, pos)
	}
	if err != nil {
		return nil, err
	}
	if group != 0 {
		return queryEvents(ctx, db.pool, stateGroupSQL, group)
	}
	return queryEvents(ctx, db.pool, `SELECT `+eventColumns+` FROM events e
		JOIN (SELECT max(pos) AS pos FROM events WHERE room_id = $1 AND state_key IS NOT NULL AND pos <= $2 AND kind = 0 GROUP BY type, state_key) m ON m.pos = e.pos`,
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
	err := db.pool.QueryRow(ctx, `SELECT state_group, event_id, state_key IS NOT NULL, replaces_state FROM events WHERE kind IN (0, 5) AND pos > 0 AND room_id = $1 AND pos > $2 ORDER BY pos LIMIT 1`, roomID, pos).Scan(&group, &id, &isState, &replaces)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && group == 0) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	st, err := queryEvents(ctx, db.pool, stateGroupSQL, group)
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
		prev, err := queryEvents(ctx, db.pool, `SELECT `+eventColumns+` FROM events e WHERE e.event_id = $1`, replaces)
		if err != nil {
			return nil, err
		}
		out = append(out, prev...)
	}
	return out, nil
}

// stateGroupSQL ($1 group ID) reads the state of a group: its chain of
// deltas back to the snapshot (at most store.MaxStateGroupChain groups), the
// nearest entry of each (type, state_key) winning; a removal (an empty event_id) joins no
// event and so drops out. Ordered by position, as the state was written.
const stateGroupSQL = `WITH RECURSIVE chain(id, prev, n) AS (
		SELECT id, prev_id, 0 FROM state_groups WHERE id = $1
		UNION ALL
		SELECT g.id, g.prev_id, c.n + 1 FROM chain c JOIN state_groups g ON g.id = c.prev WHERE c.prev <> 0 AND c.n < 1000
	)
	SELECT ` + eventColumns + ` FROM (
		SELECT x.event_id, row_number() OVER (PARTITION BY x.type, x.state_key ORDER BY c.n) AS rn
		FROM chain c JOIN state_group_entries x ON x.group_id = c.id
	) s JOIN events e ON e.event_id = s.event_id WHERE s.rn = 1 ORDER BY e.pos`

func (db *DB) RoomEvents(ctx context.Context, q store.RoomEventsQuery) ([]store.StoredEvent, error) {
	var b strings.Builder
	var args argList
	if q.WithBackfilled {
		b.WriteString(`SELECT ` + eventColumns + ` FROM events e WHERE e.kind IN (0, 4) AND e.room_id = ` + args.add(q.RoomID))
		if q.After != math.MinInt64 {
			b.WriteString(` AND e.pos > ` + args.add(q.After))
		}
		if q.Before != math.MaxInt64 {
			b.WriteString(` AND e.pos < ` + args.add(q.Before))
		}
	} else {
		b.WriteString(`SELECT ` + eventColumns + ` FROM events e WHERE e.kind = 0 AND e.room_id = ` + args.add(q.RoomID))
		if q.After > 0 {
			b.WriteString(` AND e.pos > ` + args.add(q.After))
		}
		if q.Before > 0 {
			b.WriteString(` AND e.pos < ` + args.add(q.Before))
		}
	}
	typeClause(&b, &args, q.Types, false)
	typeClause(&b, &args, q.NotTypes, true)
	if len(q.Senders) > 0 {
		b.WriteString(` AND e.sender = ANY(` + args.add(q.Senders) + `)`)
	}
	if len(q.NotSenders) > 0 {
		b.WriteString(` AND e.sender <> ALL(` + args.add(q.NotSenders) + `)`)
	}
	if q.ContainsURL != nil {
		b.WriteString(` AND e.contains_url = ` + args.add(*q.ContainsURL))
	}
	if q.WithBackfilled && q.AfterTopo != nil {
		b.WriteString(` AND (e.depth, e.pos) > (` + args.add(q.AfterTopo.Depth) + `::bigint, ` + args.add(q.AfterTopo.Pos) + `::bigint)`)
	}
	if q.WithBackfilled && q.BeforeTopo != nil {
		b.WriteString(` AND (e.depth, e.pos) < (` + args.add(q.BeforeTopo.Depth) + `::bigint, ` + args.add(q.BeforeTopo.Pos) + `::bigint)`)
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
	b.WriteString(` LIMIT ` + args.add(limit))
	return queryEvents(ctx, db.pool, b.String(), args...)
}

// typeClause filters on event types; a trailing * is a prefix wildcard
// (filters). Exact types and prefixes go in two array parameters, so the
// statement text does not depend on how many there are.
func typeClause(b *strings.Builder, args *argList, types []string, not bool) {
	if len(types) == 0 {
		return
	}
	var exact, prefixes []string
	for _, t := range types {
		if p, ok := strings.CutSuffix(t, "*"); ok {
			prefixes = append(prefixes, likeEscaper.Replace(p)+"%")
		} else {
			exact = append(exact, t)
		}
	}
	if exact == nil {
		exact = []string{}
	}
	if prefixes == nil {
		prefixes = []string{}
	}
	cond := `(e.type = ANY(` + args.add(exact) + `) OR e.type LIKE ANY(` + args.add(prefixes) + `))`
	if not {
		b.WriteString(` AND NOT ` + cond)
	} else {
		b.WriteString(` AND ` + cond)
	}
}

func (db *DB) UserMemberships(ctx context.Context, userID string) ([]store.Membership, error) {
	return queryMemberships(ctx, db.pool, `SELECT room_id, user_id, membership, event_id, pos, forgotten FROM memberships WHERE user_id = $1`, userID)
}

func (db *DB) RoomMembers(ctx context.Context, roomID string) ([]store.Membership, error) {
	return queryMemberships(ctx, db.pool, `SELECT room_id, user_id, membership, event_id, pos, forgotten FROM memberships WHERE room_id = $1`, roomID)
}

func (db *DB) JoinedCoMembers(ctx context.Context, userID string) ([]string, error) {
	rows, err := db.pool.Query(ctx, `SELECT DISTINCT o.user_id FROM memberships m JOIN memberships o ON o.room_id = m.room_id WHERE m.user_id = $1 AND m.membership = 'join' AND o.membership = 'join'`, userID)
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

func queryMemberships(ctx context.Context, q querier, query string, args ...any) ([]store.Membership, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Membership, error) {
		var m store.Membership
		err := row.Scan(&m.RoomID, &m.UserID, &m.Membership, &m.EventID, &m.Pos, &m.Forgotten)
		return m, err
	})
	if len(out) == 0 {
		out = nil
	}
	return out, err
}

func (db *DB) StateEventsOf(ctx context.Context, roomID, typ, stateKey string) ([]store.StoredEvent, error) {
	return queryEvents(ctx, db.pool, `SELECT `+eventColumns+` FROM events e WHERE e.room_id = $1 AND e.type = $2 AND e.state_key = $3 AND e.kind IN (0, 4) ORDER BY e.pos`, roomID, typ, stateKey)
}
