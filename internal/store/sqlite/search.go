package sqlite

import (
	"context"
	"strings"

	"conclave/internal/store"
)

// SearchEvents uses the FTS5 index event_search (migration 0009). Each
// term is matched as a prefix ("hel" finds "hello"), all terms must match,
// as Synapse does on SQLite. Rank is FTS5's bm25, negated so higher is better.
func (db *DB) SearchEvents(ctx context.Context, q *store.SearchQuery) ([]store.SearchHit, int, error) {
	if len(q.Terms) == 0 {
		return nil, 0, nil
	}
	var expr strings.Builder
	cols := map[string]string{"content.body": "body", "content.name": "name", "content.topic": "topic"}
	if len(q.Keys) > 0 {
		expr.WriteString("{")
		for i, k := range q.Keys {
			if i > 0 {
				expr.WriteByte(' ')
			}
			expr.WriteString(cols[k])
		}
		expr.WriteString("} : ")
	}
	expr.WriteString("(")
	for i, t := range q.Terms {
		if i > 0 {
			expr.WriteString(" AND ")
		}
		expr.WriteString(`"` + strings.ReplaceAll(t, `"`, `""`) + `"*`)
	}
	expr.WriteString(")")

	// Timeline and backfilled events only: outliers, soft-failed and rejected
	// events are indexed too (the trigger sees every insert) but clients never
	// see them.
	where := `event_search MATCH ? AND e.redacted_by = '' AND e.kind IN (0, 4)`
	args := []any{expr.String()}
	if q.JoinedBy != "" {
		where += ` AND e.room_id IN (SELECT room_id FROM memberships WHERE user_id = ? AND membership = 'join')`
		args = append(args, q.JoinedBy)
	}
	in := func(col string, vals []string, not bool) {
		if vals == nil && !not {
			return
		}
		if len(vals) == 0 {
			if !not {
				where += ` AND 0`
			}
			return
		}
		op := " IN "
		if not {
			op = " NOT IN "
		}
		where += ` AND ` + col + op + `(` + placeholders(len(vals)) + `)`
		args = append(args, stringArgs(vals)...)
	}
	in("e.room_id", q.RoomIDs, false)
	in("e.room_id", q.NotRoomIDs, true)
	in("e.sender", q.Senders, false)
	in("e.sender", q.NotSenders, true)
	globs := func(vals []string, not bool) {
		if vals == nil {
			return
		}
		if len(vals) == 0 {
			if !not {
				where += ` AND 0`
			}
			return
		}
		parts := make([]string, len(vals))
		for i, v := range vals {
			parts[i] = `e.type GLOB ?`
			args = append(args, globPattern(v))
		}
		if not {
			where += ` AND NOT (` + strings.Join(parts, " OR ") + `)`
		} else {
			where += ` AND (` + strings.Join(parts, " OR ") + `)`
		}
	}
	globs(q.Types, false)
	globs(q.NotTypes, true)

	from := ` FROM event_search JOIN events e ON e.pos = event_search.rowid WHERE `
	var count int
	if err := db.r.QueryRowContext(ctx, `SELECT count(*)`+from+where, args...).Scan(&count); err != nil {
		return nil, 0, err
	}
	page := where
	pargs := append([]any(nil), args...)
	if q.Recent {
		if q.BeforePos > 0 {
			page += ` AND e.pos < ?`
			pargs = append(pargs, q.BeforePos)
		}
		page += ` ORDER BY e.pos DESC LIMIT ?`
		pargs = append(pargs, q.Limit)
	} else {
		page += ` ORDER BY bm25(event_search), e.pos DESC LIMIT ? OFFSET ?`
		pargs = append(pargs, q.Limit, q.Offset)
	}
	rows, err := db.r.QueryContext(ctx, `SELECT `+eventColumns+`, -bm25(event_search)`+from+page, pargs...)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var hits []store.SearchHit
	for rows.Next() {
		var h store.SearchHit
		var sk *string
		if err := rows.Scan(&h.Event.Pos, &h.Event.EventID, &h.Event.RoomID, &h.Event.JSON, &h.Event.RedactedBy, &h.Event.ReplacesState,
			&h.Event.SenderDevice, &h.Event.TxnID, &h.Event.Membership, &h.Event.Type, &sk, &h.Event.Sender, &h.Rank); err != nil {
			return nil, 0, err
		}
		h.Event.StateKey = sk
		hits = append(hits, h)
	}
	return hits, count, rows.Err()
}

// globPattern turns a filter type pattern ("*" matches any run) into a
// SQLite GLOB pattern, escaping GLOB's other special characters.
func globPattern(p string) string {
	var b strings.Builder
	for _, r := range p {
		switch r {
		case '?':
			b.WriteString("[?]")
		case '[':
			b.WriteString("[[]")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
