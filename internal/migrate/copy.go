package migrate

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

func sqliteIdent(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }

// copyAll runs the plans inside tx: copy, fix up counters, verify.
func copyAll(ctx context.Context, stx *sql.Tx, tx pgx.Tx, plans []*tablePlan, seqs map[string]int64, rep *Report) error {
	for _, p := range plans {
		if p.action != actionCopy {
			continue
		}
		if p.disableTriggers {
			if _, err := tx.Exec(ctx, `ALTER TABLE `+pgx.Identifier{p.name}.Sanitize()+` DISABLE TRIGGER USER`); err != nil {
				return fmt.Errorf("table %s: disable triggers: %w", p.name, err)
			}
		}
		if p.seeded {
			if _, err := tx.Exec(ctx, `DELETE FROM `+pgx.Identifier{p.name}.Sanitize()); err != nil {
				return fmt.Errorf("table %s: %w", p.name, err)
			}
		}
		n, err := copyTable(ctx, stx, tx, p)
		if err != nil {
			return fmt.Errorf("copy table %s: %w", p.name, err)
		}
		rep.Rows += n
	}

	// Identity and serial columns continue after the copied values (and
	// after SQLite's AUTOINCREMENT high-water mark, so values of deleted
	// rows are not handed out again).
	for _, p := range plans {
		for _, c := range p.sequences {
			if p.action != actionCopy {
				continue
			}
			var max int64
			if err := tx.QueryRow(ctx, `SELECT coalesce(max(`+pgx.Identifier{c.name}.Sanitize()+`), 0) FROM `+pgx.Identifier{p.name}.Sanitize()).Scan(&max); err != nil {
				return fmt.Errorf("table %s: %w", p.name, err)
			}
			max = greatest(max, seqs[p.name])
			var err error
			if max > 0 {
				_, err = tx.Exec(ctx, `SELECT setval($1::regclass, $2, true)`, c.sequence, max)
			} else {
				_, err = tx.Exec(ctx, `SELECT setval($1::regclass, 1, false)`, c.sequence)
			}
			if err != nil {
				return fmt.Errorf("table %s: advance %s: %w", p.name, c.sequence, err)
			}
		}
	}

	// Events clients never see (outliers, soft-failed and rejected events)
	// take negative positions from a sequence (migration 0016); it goes on
	// below the lowest copied one.
	var lowest int64
	if err := tx.QueryRow(ctx, `SELECT coalesce(min(pos), 0) FROM events`).Scan(&lowest); err != nil {
		return fmt.Errorf("events: %w", err)
	}
	if lowest < 0 {
		if _, err := tx.Exec(ctx, `SELECT setval('events_apart_pos', $1, true)`, -lowest); err != nil {
			return fmt.Errorf("events: advance events_apart_pos: %w", err)
		}
	}

	// The stream position: the copied one, and in any case no lower than a
	// position any copied row holds, so new changes sort after old ones.
	var pos int64
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(pos), 0) FROM stream`).Scan(&pos); err != nil {
		return fmt.Errorf("stream: %w", err)
	}
	for _, p := range plans {
		if p.action != actionCopy || !p.hasPos {
			continue
		}
		var m int64
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(pos), 0) FROM `+pgx.Identifier{p.name}.Sanitize()).Scan(&m); err != nil {
			return fmt.Errorf("table %s: %w", p.name, err)
		}
		pos = greatest(pos, m)
	}
	tag, err := tx.Exec(ctx, `UPDATE stream SET pos = $1 WHERE id = 1`, pos)
	if err != nil {
		return fmt.Errorf("stream: %w", err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("stream: the source has no stream row")
	}
	rep.StreamPos = pos

	for _, p := range plans {
		if p.disableTriggers {
			if _, err := tx.Exec(ctx, `ALTER TABLE `+pgx.Identifier{p.name}.Sanitize()+` ENABLE TRIGGER USER`); err != nil {
				return fmt.Errorf("table %s: enable triggers: %w", p.name, err)
			}
		}
	}
	return verify(ctx, stx, tx, plans, rep)
}

func greatest(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// copyTable streams one table from SQLite into PostgreSQL with COPY.
func copyTable(ctx context.Context, stx *sql.Tx, tx pgx.Tx, p *tablePlan) (int64, error) {
	names := make([]string, len(p.columns))
	sel := make([]string, len(p.columns))
	for i, c := range p.columns {
		names[i] = c.name
		sel[i] = sqliteIdent(c.name)
	}
	if len(names) == 0 {
		return 0, fmt.Errorf("no columns in common")
	}
	rows, err := stx.QueryContext(ctx, `SELECT `+strings.Join(sel, ", ")+` FROM `+sqliteIdent(p.name))
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	srcRows := &rowSource{rows: rows, cols: p.columns, buf: make([]any, len(p.columns))}
	n, err := tx.CopyFrom(ctx, pgx.Identifier{p.name}, names, srcRows)
	if err != nil {
		if srcRows.err != nil {
			return n, srcRows.err
		}
		return n, err
	}
	return n, nil
}

// rowSource feeds SQLite rows to pgx's CopyFrom, converting each value.
type rowSource struct {
	rows *sql.Rows
	cols []column
	buf  []any
	row  int64
	vals []any
	err  error
}

func (s *rowSource) Next() bool {
	if s.err != nil || !s.rows.Next() {
		return false
	}
	s.row++
	ptrs := make([]any, len(s.buf))
	for i := range s.buf {
		s.buf[i] = nil
		ptrs[i] = &s.buf[i]
	}
	if err := s.rows.Scan(ptrs...); err != nil {
		s.err = err
		return false
	}
	vals := make([]any, len(s.buf))
	for i, c := range s.cols {
		v, err := c.conv(s.buf[i])
		if err != nil {
			s.err = fmt.Errorf("row %d, column %s: %w", s.row, c.name, err)
			return false
		}
		vals[i] = v
	}
	s.vals = vals
	return true
}

func (s *rowSource) Values() ([]any, error) { return s.vals, nil }

func (s *rowSource) Err() error {
	if s.err != nil {
		return s.err
	}
	return s.rows.Err()
}

// verify counts the rows of every copied or rebuilt table on both sides.
func verify(ctx context.Context, stx *sql.Tx, tx pgx.Tx, plans []*tablePlan, rep *Report) error {
	var bad []string
	for _, p := range plans {
		r := TableResult{Name: p.name, Why: p.why, SQLite: -1, PG: -1, onlySQLite: !p.inPG, onlyPostgres: !p.inSQLite}
		switch p.action {
		case actionCopy:
			r.Action = "copied"
		case actionRebuild:
			r.Action = "rebuilt"
		case actionSkip:
			r.Action = "skipped"
		}
		if p.action != actionSkip {
			if p.inSQLite {
				if err := stx.QueryRowContext(ctx, `SELECT count(*) FROM `+sqliteIdent(p.name)).Scan(&r.SQLite); err != nil {
					return fmt.Errorf("count %s in SQLite: %w", p.name, err)
				}
			}
			if p.inPG {
				if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{p.name}.Sanitize()).Scan(&r.PG); err != nil {
					return fmt.Errorf("count %s in PostgreSQL: %w", p.name, err)
				}
			}
			if p.inSQLite && p.inPG && r.SQLite != r.PG {
				r.Mismatch = true
				bad = append(bad, fmt.Sprintf("%s (SQLite %d, PostgreSQL %d)", p.name, r.SQLite, r.PG))
			}
		}
		rep.Tables = append(rep.Tables, r)
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s; nothing was committed", ErrMismatch, strings.Join(bad, ", "))
	}
	return nil
}
