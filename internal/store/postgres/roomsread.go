package postgres

import (
	"context"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"conclave/internal/store"
)

func (db *DB) Relations(ctx context.Context, q store.RelationsQuery) ([]store.StoredEvent, error) {
	var b strings.Builder
	var args argList
	b.WriteString(`SELECT ` + eventColumns + ` FROM events e WHERE e.relates_to = ` + args.add(q.EventID) + ` AND e.relates_to <> '' AND e.room_id = ` + args.add(q.RoomID) + ` AND e.redacted_by = '' AND e.kind = 0`)
	if q.RelType != "" {
		b.WriteString(` AND e.rel_type = ` + args.add(q.RelType))
	}
	if q.EventType != "" {
		b.WriteString(` AND e.type = ` + args.add(q.EventType))
	}
	if q.After > 0 {
		b.WriteString(` AND e.pos > ` + args.add(q.After))
	}
	if q.Before > 0 {
		b.WriteString(` AND e.pos < ` + args.add(q.Before))
	}
	if q.Backwards {
		b.WriteString(` ORDER BY e.pos DESC`)
	} else {
		b.WriteString(` ORDER BY e.pos ASC`)
	}
	b.WriteString(` LIMIT ` + args.add(max(q.Limit, 1)))
	return queryEvents(ctx, db.pool, b.String(), args...)
}

// maxReferences bounds the m.reference chunk bundled per event.
const maxReferences = 100

// bundledChunk bounds the parents per query.
const bundledChunk = 500

// bundledQuery gathers threads (count, latest reply, whether the user
// replied), the newest valid edit and the oldest references of the parents
// in $1, for the user $2. The parents are one array parameter, so this is
// one prepared statement whatever their number.
var bundledQuery = `
	SELECT t.relates_to, 't', t.cnt, (SELECT event_id FROM events WHERE pos = t.latest), t.part, 0::bigint FROM (
		SELECT r.relates_to, count(*) AS cnt, max(r.pos) AS latest, bool_or(r.sender = $2) AS part FROM events r
		JOIN events p ON p.event_id = r.relates_to AND p.room_id = r.room_id
		WHERE r.relates_to = ANY($1) AND r.relates_to <> '' AND r.rel_type = 'm.thread' AND r.redacted_by = ''
		GROUP BY r.relates_to) t
	UNION ALL
	SELECT x.relates_to, 'e', 0, x.event_id, false, 0 FROM (
		SELECT r.relates_to, r.event_id, row_number() OVER (PARTITION BY r.relates_to ORDER BY r.origin_server_ts DESC, r.event_id COLLATE "C" DESC) AS rn
		FROM events r JOIN events p ON p.event_id = r.relates_to AND p.room_id = r.room_id
		WHERE r.relates_to = ANY($1) AND r.relates_to <> '' AND r.rel_type = 'm.replace' AND r.redacted_by = ''
			AND r.sender = p.sender AND r.type = p.type AND r.state_key IS NULL AND p.state_key IS NULL AND p.rel_type <> 'm.replace'
	) x WHERE x.rn = 1
	UNION ALL
	SELECT y.relates_to, 'r', 0, y.event_id, false, y.pos FROM (
		SELECT r.relates_to, r.event_id, r.pos, row_number() OVER (PARTITION BY r.relates_to ORDER BY r.pos) AS rn
		FROM events r JOIN events p ON p.event_id = r.relates_to AND p.room_id = r.room_id
		WHERE r.relates_to = ANY($1) AND r.relates_to <> '' AND r.rel_type = 'm.reference' AND r.redacted_by = ''
	) y WHERE y.rn <= ` + strconv.Itoa(maxReferences) + `
	ORDER BY 2, 1, 6`

func (db *DB) BundledRelations(ctx context.Context, eventIDs []string, userID string) (*store.BundledRelations, error) {
	out := &store.BundledRelations{
		Threads:    map[string]store.ThreadSummary{},
		Edits:      map[string]string{},
		References: map[string][]string{},
	}
	for len(eventIDs) > 0 {
		n := min(len(eventIDs), bundledChunk)
		if err := db.bundledRelations(ctx, eventIDs[:n], userID, out); err != nil {
			return nil, err
		}
		eventIDs = eventIDs[n:]
	}
	return out, nil
}

func (db *DB) bundledRelations(ctx context.Context, ids []string, userID string, out *store.BundledRelations) error {
	// Most events have no relations: a cheap probe of the relation index
	// keeps the aggregation query for those that do.
	ids, err := queryStrings(ctx, db.pool, `SELECT DISTINCT relates_to FROM events WHERE relates_to = ANY($1) AND relates_to <> ''`, ids)
	if err != nil || len(ids) == 0 {
		return err
	}
	rows, err := db.pool.Query(ctx, bundledQuery, ids, userID)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var parent, kind, eventID string
		var count int
		var participated *bool
		var ord int64
		if err := rows.Scan(&parent, &kind, &count, &eventID, &participated, &ord); err != nil {
			return err
		}
		switch kind {
		case "t":
			out.Threads[parent] = store.ThreadSummary{Count: count, LatestEventID: eventID, Participated: participated != nil && *participated}
		case "e":
			out.Edits[parent] = eventID
		case "r":
			out.References[parent] = append(out.References[parent], eventID)
		}
	}
	return rows.Err()
}

func (db *DB) Threads(ctx context.Context, q store.ThreadsQuery) ([]store.ThreadActivity, error) {
	var b strings.Builder
	var args argList
	b.WriteString(`SELECT t.relates_to, max(t.pos) AS latest FROM events t
		JOIN events p ON p.event_id = t.relates_to AND p.room_id = t.room_id
		WHERE t.room_id = ` + args.add(q.RoomID) + ` AND t.rel_type = 'm.thread' AND t.rel_type <> '' AND t.redacted_by = ''
		GROUP BY t.relates_to HAVING true`)
	if q.Before > 0 {
		b.WriteString(` AND max(t.pos) < ` + args.add(q.Before))
	}
	if q.ParticipatedBy != "" {
		u := args.add(q.ParticipatedBy)
		b.WriteString(` AND (bool_or(p.sender = ` + u + `) OR bool_or(t.sender = ` + u + `))`)
	}
	b.WriteString(` ORDER BY latest DESC LIMIT ` + args.add(max(q.Limit, 1)))
	rows, err := db.pool.Query(ctx, b.String(), args...)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.ThreadActivity, error) {
		var t store.ThreadActivity
		err := row.Scan(&t.RootID, &t.LatestPos)
		return t, err
	})
	if len(out) == 0 {
		out = nil
	}
	return out, err
}

func (db *DB) PublicRoomIDs(ctx context.Context) ([]string, error) {
	return queryStrings(ctx, db.pool, `SELECT room_id FROM rooms WHERE public ORDER BY room_id COLLATE "C"`)
}

func (db *DB) MoveAliases(ctx context.Context, fromRoomID, toRoomID string) error {
	_, err := db.pool.Exec(ctx, `UPDATE room_aliases SET room_id = $1 WHERE room_id = $2`, toRoomID, fromRoomID)
	return err
}

func (db *DB) EventsNearTimestamp(ctx context.Context, roomID string, ts int64, backwards bool, limit int) ([]store.StoredEvent, error) {
	q := `SELECT ` + eventColumns + ` FROM events e WHERE e.kind IN (0, 4) AND e.room_id = $1 AND e.origin_server_ts >= $2 ORDER BY e.origin_server_ts ASC, e.pos ASC LIMIT $3`
	if backwards {
		q = `SELECT ` + eventColumns + ` FROM events e WHERE e.kind IN (0, 4) AND e.room_id = $1 AND e.origin_server_ts <= $2 ORDER BY e.origin_server_ts DESC, e.pos DESC LIMIT $3`
	}
	return queryEvents(ctx, db.pool, q, roomID, ts, max(limit, 1))
}
