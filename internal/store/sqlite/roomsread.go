package sqlite

import (
	"context"
	"database/sql"
	"strconv"
	"strings"

	"conclave/internal/store"
)

// The literal "relates_to <> ''" and "rel_type <> ''" terms let SQLite
// use the partial indexes on those columns.

func (db *DB) Relations(ctx context.Context, q store.RelationsQuery) ([]store.StoredEvent, error) {
	var b strings.Builder
	args := []any{q.EventID, q.RoomID}
	b.WriteString(`SELECT ` + eventColumns + ` FROM events e WHERE e.relates_to = ? AND e.relates_to <> '' AND e.room_id = ? AND e.redacted_by = '' AND e.kind = 0`)
	if q.RelType != "" {
		b.WriteString(` AND e.rel_type = ?`)
		args = append(args, q.RelType)
	}
	if q.EventType != "" {
		b.WriteString(` AND e.type = ?`)
		args = append(args, q.EventType)
	}
	if q.After > 0 {
		b.WriteString(` AND e.pos > ?`)
		args = append(args, q.After)
	}
	if q.Before > 0 {
		b.WriteString(` AND e.pos < ?`)
		args = append(args, q.Before)
	}
	if q.Backwards {
		b.WriteString(` ORDER BY e.pos DESC`)
	} else {
		b.WriteString(` ORDER BY e.pos ASC`)
	}
	b.WriteString(` LIMIT ?`)
	args = append(args, max(q.Limit, 1))
	return db.queryEvents(ctx, db.r, b.String(), args...)
}

// maxReferences bounds the m.reference chunk bundled per event.
const maxReferences = 100

// bundledChunk bounds the parents per query.
const bundledChunk = 500

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
	// keeps the full aggregation query for those that do.
	ids, err := db.relatedParents(ctx, ids)
	if err != nil || len(ids) == 0 {
		return err
	}
	// The parents are listed once, in a CTE the three parts share, padded
	// with "" (which relates to nothing) to one of a few sizes so that the
	// statement is prepared once per size: preparing this query costs more
	// than running it.
	slots := bundledSlots(len(ids))
	var vals strings.Builder
	vals.Grow(4 * slots)
	for i := 0; i < slots; i++ {
		if i > 0 {
			vals.WriteByte(',')
		}
		vals.WriteString("(?)")
	}
	// Threads: count, latest reply and whether the user replied. Edits: the
	// newest valid replacement per event. References: the oldest maxReferences.
	query := `WITH ids(id) AS (VALUES ` + vals.String() + `)
		SELECT relates_to, 't', cnt, (SELECT event_id FROM events WHERE pos = latest), part FROM (
			SELECT r.relates_to, count(*) AS cnt, max(r.pos) AS latest, max(r.sender = ?) AS part FROM events r
			CROSS JOIN events p ON p.event_id = r.relates_to AND p.room_id = r.room_id
			WHERE r.relates_to IN ids AND r.relates_to <> '' AND r.rel_type = 'm.thread' AND r.redacted_by = ''
			GROUP BY r.relates_to)
		UNION ALL
		SELECT relates_to, 'e', 0, event_id, 0 FROM (
			SELECT r.relates_to, r.event_id, row_number() OVER (PARTITION BY r.relates_to ORDER BY r.origin_server_ts DESC, r.event_id DESC) AS rn
			FROM events r CROSS JOIN events p ON p.event_id = r.relates_to AND p.room_id = r.room_id
			WHERE r.relates_to IN ids AND r.relates_to <> '' AND r.rel_type = 'm.replace' AND r.redacted_by = ''
				AND r.sender = p.sender AND r.type = p.type AND r.state_key IS NULL AND p.state_key IS NULL AND p.rel_type <> 'm.replace'
		) WHERE rn = 1
		UNION ALL
		SELECT relates_to, 'r', 0, event_id, 0 FROM (
			SELECT r.relates_to, r.event_id, row_number() OVER (PARTITION BY r.relates_to ORDER BY r.pos) AS rn
			FROM events r CROSS JOIN events p ON p.event_id = r.relates_to AND p.room_id = r.room_id
			WHERE r.relates_to IN ids AND r.relates_to <> '' AND r.rel_type = 'm.reference' AND r.redacted_by = ''
		) WHERE rn <= ` + strconv.Itoa(maxReferences)
	args := make([]any, 0, 1+slots)
	args = append(args, stringArgs(ids)...)
	for len(args) < slots {
		args = append(args, "")
	}
	args = append(args, userID)
	stmt, err := db.prepared(ctx, query)
	if err != nil {
		return err
	}
	rows, err := stmt.QueryContext(ctx, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var parent, kind, eventID string
		var count int
		var participated sql.NullBool
		if err := rows.Scan(&parent, &kind, &count, &eventID, &participated); err != nil {
			return err
		}
		switch kind {
		case "t":
			out.Threads[parent] = store.ThreadSummary{Count: count, LatestEventID: eventID, Participated: participated.Bool}
		case "e":
			out.Edits[parent] = eventID
		case "r":
			out.References[parent] = append(out.References[parent], eventID)
		}
	}
	return rows.Err()
}

// relatedParents returns the events among ids that something relates to.
func (db *DB) relatedParents(ctx context.Context, ids []string) ([]string, error) {
	slots := bundledSlots(len(ids))
	stmt, err := db.prepared(ctx, `SELECT DISTINCT relates_to FROM events WHERE relates_to IN (`+placeholders(slots)+`) AND relates_to <> ''`)
	if err != nil {
		return nil, err
	}
	args := stringArgs(ids)
	for len(args) < slots {
		args = append(args, "")
	}
	rows, err := stmt.QueryContext(ctx, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// bundledSlots rounds a number of parents up to a statement size.
func bundledSlots(n int) int {
	for _, s := range []int{8, 32, 128} {
		if n <= s {
			return s
		}
	}
	return bundledChunk
}

// prepared returns a cached prepared statement on the read pool.
func (db *DB) prepared(ctx context.Context, query string) (*sql.Stmt, error) {
	if st := db.r.stmt(ctx, query); st != nil {
		return st, nil
	}
	return db.r.PrepareContext(ctx, query)
}

func (db *DB) Threads(ctx context.Context, q store.ThreadsQuery) ([]store.ThreadActivity, error) {
	var b strings.Builder
	args := []any{q.RoomID}
	b.WriteString(`SELECT t.relates_to, max(t.pos) AS latest FROM events t
		CROSS JOIN events p ON p.event_id = t.relates_to AND p.room_id = t.room_id
		WHERE t.room_id = ? AND t.rel_type = 'm.thread' AND t.rel_type <> '' AND t.redacted_by = ''
		GROUP BY t.relates_to HAVING 1`)
	if q.Before > 0 {
		b.WriteString(` AND latest < ?`)
		args = append(args, q.Before)
	}
	if q.ParticipatedBy != "" {
		b.WriteString(` AND (max(p.sender = ?) OR max(t.sender = ?))`)
		args = append(args, q.ParticipatedBy, q.ParticipatedBy)
	}
	b.WriteString(` ORDER BY latest DESC LIMIT ?`)
	args = append(args, max(q.Limit, 1))
	rows, err := db.r.QueryContext(ctx, b.String(), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.ThreadActivity
	for rows.Next() {
		var t store.ThreadActivity
		if err := rows.Scan(&t.RootID, &t.LatestPos); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

func (db *DB) PublicRoomIDs(ctx context.Context) ([]string, error) {
	return queryStrings(ctx, db.r, `SELECT room_id FROM rooms WHERE public = 1 ORDER BY room_id`)
}

func (db *DB) MoveAliases(ctx context.Context, fromRoomID, toRoomID string) error {
	_, err := db.w.ExecContext(ctx, `UPDATE room_aliases SET room_id = ? WHERE room_id = ?`, toRoomID, fromRoomID)
	return err
}

func (db *DB) EventsNearTimestamp(ctx context.Context, roomID string, ts int64, backwards bool, limit int) ([]store.StoredEvent, error) {
	q := `SELECT ` + eventColumns + ` FROM events e WHERE e.kind IN (0, 4) AND e.room_id = ? AND e.origin_server_ts >= ? ORDER BY e.origin_server_ts ASC, e.pos ASC LIMIT ?`
	if backwards {
		q = `SELECT ` + eventColumns + ` FROM events e WHERE e.kind IN (0, 4) AND e.room_id = ? AND e.origin_server_ts <= ? ORDER BY e.origin_server_ts DESC, e.pos DESC LIMIT ?`
	}
	return db.queryEvents(ctx, db.r, q, roomID, ts, max(limit, 1))
}
