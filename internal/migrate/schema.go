package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
)

// sqliteTable is a table of the source as SQLite describes it.
type sqliteTable struct {
	name    string
	columns []string
	types   map[string]string // declared type, upper case
}

// pgColumn is a column of the target.
type pgColumn struct {
	name     string
	dataType string // information_schema.columns.data_type
	sequence string // identity or serial sequence, "" if none
}

type pgTable struct {
	name    string
	columns []pgColumn
}

// fts5Shadow are the suffixes of the tables FTS5 keeps for a virtual table.
var fts5Shadow = []string{"_data", "_idx", "_content", "_docsize", "_config"}

var virtualRe = regexp.MustCompile(`(?is)^\s*CREATE\s+VIRTUAL\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?["\x60\[]?([A-Za-z0-9_]+)["\x60\]]?\s+USING\s+([A-Za-z0-9_]+)`)

// readSQLiteSchema lists the source's tables, leaving out SQLite's own
// (sqlite_*) and the shadow tables of FTS5 virtual tables.
func readSQLiteSchema(ctx context.Context, q *sql.Tx) (map[string]*sqliteTable, error) {
	rows, err := q.QueryContext(ctx, `SELECT name, coalesce(sql, '') FROM sqlite_master WHERE type = 'table' ORDER BY name`)
	if err != nil {
		return nil, err
	}
	type entry struct{ name, sql string }
	var all []entry
	for rows.Next() {
		var e entry
		if err := rows.Scan(&e.name, &e.sql); err != nil {
			rows.Close()
			return nil, err
		}
		all = append(all, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	shadow := map[string]bool{}
	for _, e := range all {
		if m := virtualRe.FindStringSubmatch(e.sql); m != nil && strings.EqualFold(m[2], "fts5") {
			for _, s := range fts5Shadow {
				shadow[m[1]+s] = true
			}
		}
	}
	out := map[string]*sqliteTable{}
	for _, e := range all {
		if strings.HasPrefix(e.name, "sqlite_") || shadow[e.name] {
			continue
		}
		t := &sqliteTable{name: e.name, types: map[string]string{}}
		cols, err := q.QueryContext(ctx, `SELECT name, type FROM pragma_table_info(?) ORDER BY cid`, e.name)
		if err != nil {
			return nil, err
		}
		for cols.Next() {
			var name, typ string
			if err := cols.Scan(&name, &typ); err != nil {
				cols.Close()
				return nil, err
			}
			t.columns = append(t.columns, name)
			t.types[name] = strings.ToUpper(typ)
		}
		cols.Close()
		if err := cols.Err(); err != nil {
			return nil, err
		}
		out[e.name] = t
	}
	return out, nil
}

// sqliteSequences reads sqlite_sequence (AUTOINCREMENT high-water marks).
func sqliteSequences(ctx context.Context, q *sql.Tx) (map[string]int64, error) {
	out := map[string]int64{}
	var n int
	if err := q.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_sequence'`).Scan(&n); err != nil || n == 0 {
		return out, err
	}
	rows, err := q.QueryContext(ctx, `SELECT name, seq FROM sqlite_sequence`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var seq int64
		if err := rows.Scan(&name, &seq); err != nil {
			return nil, err
		}
		out[name] = seq
	}
	return out, rows.Err()
}

// pgQuerier is what a connection and a transaction offer.
type pgQuerier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// readPGSchema lists the target's base tables in the current schema, with
// their columns (generated columns left out: they cannot be written).
func readPGSchema(ctx context.Context, q pgQuerier) (map[string]*pgTable, error) {
	rows, err := q.Query(ctx, `
		SELECT c.table_name, c.column_name, c.data_type,
		       coalesce(pg_get_serial_sequence(quote_ident(c.table_schema) || '.' || quote_ident(c.table_name), c.column_name), '')
		FROM information_schema.columns c
		JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
		WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' AND c.is_generated <> 'ALWAYS'
		ORDER BY c.table_name, c.ordinal_position`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]*pgTable{}
	for rows.Next() {
		var table string
		var c pgColumn
		if err := rows.Scan(&table, &c.name, &c.dataType, &c.sequence); err != nil {
			return nil, err
		}
		t := out[table]
		if t == nil {
			t = &pgTable{name: table}
			out[table] = t
		}
		t.columns = append(t.columns, c)
	}
	return out, rows.Err()
}

// pgForeignKeys returns table → the tables its foreign keys reference.
func pgForeignKeys(ctx context.Context, q pgQuerier) (map[string][]string, error) {
	rows, err := q.Query(ctx, `
		SELECT cl.relname::text, ref.relname::text FROM pg_constraint co
		JOIN pg_class cl ON cl.oid = co.conrelid
		JOIN pg_class ref ON ref.oid = co.confrelid
		WHERE co.contype = 'f' AND cl.relnamespace = current_schema()::regnamespace`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var t, ref string
		if err := rows.Scan(&t, &ref); err != nil {
			return nil, err
		}
		out[t] = append(out[t], ref)
	}
	return out, rows.Err()
}

// pgTriggerTables lists the tables that have user (non-internal) triggers.
func pgTriggerTables(ctx context.Context, q pgQuerier) (map[string]bool, error) {
	rows, err := q.Query(ctx, `
		SELECT DISTINCT cl.relname::text FROM pg_trigger tg JOIN pg_class cl ON cl.oid = tg.tgrelid
		WHERE NOT tg.tgisinternal AND cl.relnamespace = current_schema()::regnamespace`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, err
		}
		out[t] = true
	}
	return out, rows.Err()
}

// column is one column of a copy: read from SQLite, converted, written to PG.
type column struct {
	name string
	conv converter
}

// tablePlan is what happens to one table.
type tablePlan struct {
	name            string
	action          tableAction
	why             string
	columns         []column     // actionCopy
	sequences       []pgColumn   // identity/serial columns to advance after the copy
	hasPos          bool         // a pos column: the stream must stay ahead of it
	disableTriggers bool         // user triggers switched off during the copy
	seeded          bool         // the target's seed rows are deleted first
	inSQLite, inPG  bool         // where the table exists
	sqlite          *sqliteTable // nil when absent
}

// plan decides, for every table of both schemas, what the migration does,
// in an order that satisfies the target's foreign keys. It fails on anything
// the decision lists do not cover.
func plan(src map[string]*sqliteTable, dst map[string]*pgTable, fks map[string][]string, triggers map[string]bool) ([]*tablePlan, error) {
	var errs []error
	names := map[string]bool{}
	for n := range src {
		names[n] = true
	}
	for n := range dst {
		names[n] = true
	}
	var plans []*tablePlan
	for n := range names {
		s, d := src[n], dst[n]
		p := &tablePlan{name: n, inSQLite: s != nil, inPG: d != nil, sqlite: s}
		if dec, ok := tableDecisions[n]; ok {
			p.action, p.why = dec.action, dec.why
			plans = append(plans, p)
			continue
		}
		switch {
		case s == nil:
			errs = append(errs, fmt.Errorf("table %s exists only in PostgreSQL: decide in internal/migrate/decisions.go how to migrate it", n))
			continue
		case d == nil:
			errs = append(errs, fmt.Errorf("table %s exists only in SQLite: decide in internal/migrate/decisions.go how to migrate it", n))
			continue
		}
		p.action = actionCopy
		_, p.seeded = seededTables[n]
		_, keep := keepTriggers[n]
		p.disableTriggers = triggers[n] && !keep
		inSrc := map[string]bool{}
		for _, c := range s.columns {
			inSrc[c] = true
		}
		inDst := map[string]bool{}
		for _, c := range d.columns {
			inDst[c.name] = true
			if c.sequence != "" {
				p.sequences = append(p.sequences, c)
			}
			if c.name == "pos" {
				p.hasPos = true
			}
			if !inSrc[c.name] {
				key := n + "." + c.name
				if _, ok := columnDecisions[key]; !ok {
					errs = append(errs, fmt.Errorf("column %s exists only in PostgreSQL: decide in internal/migrate/decisions.go (columnDecisions)", key))
				}
				continue
			}
			conv, err := converterFor(s.types[c.name], c.dataType)
			if err != nil {
				errs = append(errs, fmt.Errorf("column %s.%s: %w", n, c.name, err))
				continue
			}
			p.columns = append(p.columns, column{name: c.name, conv: conv})
		}
		for _, c := range s.columns {
			if !inDst[c] {
				key := n + "." + c
				if _, ok := columnDecisions[key]; !ok {
					errs = append(errs, fmt.Errorf("column %s exists only in SQLite: decide in internal/migrate/decisions.go (columnDecisions)", key))
				}
			}
		}
		plans = append(plans, p)
	}
	if len(errs) > 0 {
		sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
		return nil, errors.Join(errs...)
	}
	return order(plans, fks)
}

// order sorts the plans so that a table comes after the tables its foreign
// keys reference (alphabetical otherwise).
func order(plans []*tablePlan, fks map[string][]string) ([]*tablePlan, error) {
	sort.Slice(plans, func(i, j int) bool { return plans[i].name < plans[j].name })
	byName := map[string]*tablePlan{}
	for _, p := range plans {
		byName[p.name] = p
	}
	var out []*tablePlan
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(p *tablePlan) error
	visit = func(p *tablePlan) error {
		switch state[p.name] {
		case 1:
			return fmt.Errorf("foreign keys form a cycle through table %s", p.name)
		case 2:
			return nil
		}
		state[p.name] = 1
		refs := append([]string(nil), fks[p.name]...)
		sort.Strings(refs)
		for _, r := range refs {
			if q := byName[r]; q != nil && r != p.name {
				if err := visit(q); err != nil {
					return err
				}
			}
		}
		state[p.name] = 2
		out = append(out, p)
		return nil
	}
	for _, p := range plans {
		if err := visit(p); err != nil {
			return nil, err
		}
	}
	return out, nil
}
