package postgres

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5"

	"conclave/internal/store"
)

// SearchEvents uses the event_search table (migration 0009). Each term is
// matched as a prefix and all terms must match, as in the SQLite backend.
// Rank is ts_rank: higher is better.
func (db *DB) SearchEvents(ctx context.Context, q *store.SearchQuery) ([]store.SearchHit, int, error) {
	if len(q.Terms) == 0 {
		return nil, 0, nil
	}
	var args argList
	cols := map[string]string{"content.body": "s.vec_body", "content.name": "s.vec_name", "content.topic": "s.vec_topic"}
	vec := "(s.vec_body || s.vec_name || s.vec_topic)"
	if len(q.Keys) > 0 {
		parts := make([]string, 0, len(q.Keys))
		for _, k := range q.Keys {
			if c, ok := cols[k]; ok {
				parts = append(parts, c)
			}
		}
		if len(parts) > 0 {
			vec = "(" + strings.Join(parts, " || ") + ")"
		}
	}
	// Each term becomes one quoted lexeme with a prefix marker, so no user
	// input is ever parsed as tsquery syntax.
	tq := make([]string, len(q.Terms))
	for i, t := range q.Terms {
		tq[i] = `to_tsquery('simple', quote_literal(unaccent(lower(` + args.add(t) + `))) || ':*')`
	}
	query := "(" + strings.Join(tq, " && ") + ")"
	// Timeline and backfilled events only (outliers, soft-failed and
	// rejected events are indexed too, but clients never see them).
	where := vec + ` @@ ` + query + ` AND e.redacted_by = '' AND e.kind IN (0, 4)`
	if q.JoinedBy != "" {
		where += ` AND e.room_id IN (SELECT room_id FROM memberships WHERE user_id = ` + args.add(q.JoinedBy) + ` AND membership = 'join')`
	}
	in := func(col string, vals []string, not bool) {
		if vals == nil && !not {
			return
		}
		if len(vals) == 0 {
			if !not {
				where += ` AND false`
			}
			return
		}
		if not {
			where += ` AND ` + col + ` <> ALL(` + args.add(vals) + `)`
		} else {
			where += ` AND ` + col + ` = ANY(` + args.add(vals) + `)`
		}
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
				where += ` AND false`
			}
			return
		}
		parts := make([]string, len(vals))
		for i, v := range vals {
			parts[i] = `e.type LIKE ` + args.add(likePattern(v)) + ` ESCAPE '\'`
		}
		if not {
			where += ` AND NOT (` + strings.Join(parts, " OR ") + `)`
		} else {
			where += ` AND (` + strings.Join(parts, " OR ") + `)`
		}
	}
	globs(q.Types, false)
	globs(q.NotTypes, true)

	from := ` FROM event_search s JOIN events e ON e.pos = s.pos WHERE `
	var count int
	if err := db.pool.QueryRow(ctx, `SELECT count(*)`+from+where, args...).Scan(&count); err != nil {
		return nil, 0, err
	}
	page := where
	pargs := append(argList(nil), args...)
	rank := `ts_rank(` + vec + `, ` + query + `)`
	if q.Recent {
		if q.BeforePos > 0 {
			page += ` AND e.pos < ` + pargs.add(q.BeforePos)
		}
		page += ` ORDER BY e.pos DESC LIMIT ` + pargs.add(q.Limit)
	} else {
		page += ` ORDER BY ` + rank + ` DESC, e.pos DESC LIMIT ` + pargs.add(q.Limit) + ` OFFSET ` + pargs.add(q.Offset)
	}
	rows, err := db.pool.Query(ctx, `SELECT `+eventColumns+`, `+rank+from+page, pargs...)
	if err != nil {
		return nil, 0, err
	}
	hits, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.SearchHit, error) {
		var h store.SearchHit
		var r float32
		err := row.Scan(&h.Event.Pos, &h.Event.EventID, &h.Event.RoomID, &h.Event.JSON, &h.Event.RedactedBy, &h.Event.ReplacesState,
			&h.Event.SenderDevice, &h.Event.TxnID, &h.Event.Membership, &h.Event.Type, &h.Event.StateKey, &h.Event.Sender, &r)
		h.Rank = float64(r)
		return h, err
	})
	return hits, count, err
}

// likePattern turns a filter type pattern ("*" matches any run) into a
// LIKE pattern, escaping LIKE's own metacharacters.
func likePattern(p string) string {
	return strings.ReplaceAll(likeEscaper.Replace(p), "*", "%")
}
