package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"conclave/internal/store/sqlstore"
)

// The SQLite side of the areas in store/sqlstore: reads on the reader pool,
// writes on the one writer connection, both through the prepared statement
// cache (stmtcache.go); transactions through db.tx.

// dialect: SQLite runs the shared statements as written.
var dialect = sqlstore.Dialect{MaxList: maxInArgs, SearchKey: "rowid",
	// One writer: the lowest position so far, less one.
	ApartPos: `SELECT min(0, coalesce(min(pos), 0)) - 1 FROM events`,
	ContentField: func(col, key string) string {
		return "CAST(json_extract(CAST(" + col + " AS TEXT), '$.content." + key + "') AS TEXT)"
	}}

type backend struct{ db *DB }

var _ sqlstore.Backend = backend{}

func (b backend) Read() sqlstore.Querier  { return sharedQuerier[*conn]{b.db.r} }
func (b backend) Write() sqlstore.Querier { return sharedQuerier[*conn]{b.db.w} }

func (b backend) Tx(ctx context.Context, fn func(tx sqlstore.Querier) error) error {
	return b.db.tx(ctx, func(tx *Tx) error { return fn(sharedQuerier[*Tx]{tx}) })
}

// InsertAtNewPositions allocates the positions first: the writer connection
// is this transaction's alone, so nothing waits on the stream row meanwhile.
func (b backend) InsertAtNewPositions(ctx context.Context, q sqlstore.Querier, table string, cols []string, rows [][]any) error {
	if len(rows) == 0 {
		return nil
	}
	tx := q.(sharedQuerier[*Tx]).q
	pos, err := nextPos(ctx, tx, len(rows))
	if err != nil {
		return err
	}
	query := `INSERT INTO ` + table + ` (pos, ` + strings.Join(cols, ", ") + `) VALUES (?` + strings.Repeat(", ?", len(cols)) + `)`
	args := make([]any, 1+len(cols))
	for i, r := range rows {
		args[0] = pos + int64(i)
		copy(args[1:], r)
		if _, err := tx.ExecContext(ctx, query, args...); err != nil {
			return err
		}
	}
	return nil
}

// AnnounceChange needs nothing: no other process shares the database.
func (backend) AnnounceChange(context.Context, sqlstore.Querier) error { return nil }

// Lock needs nothing: write transactions run one at a time on the writer.
func (backend) Lock(context.Context, sqlstore.Querier, sqlstore.Lock, string) error { return nil }

func (backend) IsUnique(err error) bool { return isConstraint(err) }

func (backend) IsForeignKey(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
}

// sharedQuerier runs the shared statements on a pool (reader or writer), outside
// a transaction, or on a write transaction (*Tx): both go through the
// prepared statement cache.
type sharedQuerier[Q interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}] struct{ q Q }

func (q sharedQuerier[Q]) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := q.q.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (q sharedQuerier[Q]) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	rows, err := q.q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return sqlRows{rows}, nil
}

func (q sharedQuerier[Q]) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	return q.q.QueryRowContext(ctx, query, args...)
}

// sqlRows is *sql.Rows with pgx's Close (no error: Err reports it).
type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { r.Rows.Close() }
