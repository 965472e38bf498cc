// Package sqlstore holds the store areas both SQL backends implement with
// the same statements: accounts (users, devices, tokens), profiles, the user
// directory, pushers, media, and keys (device and one-time keys,
// cross-signing, to-device sends, dehydrated devices, key backups). It is
// written once against Backend, a small interface each backend satisfies
// over its own driver (store/sqlite over database/sql, store/postgres over
// pgx), and a Dialect that spells out where their SQL differs.
//
// What stays in each backend: event persistence, stream position
// allocation (InsertAtNewPositions is the backend's), the /sync queries,
// account data, receipts, filters, search and the cluster bus: there the
// two differ in more than spelling (PostgreSQL pipelines its writes so the
// stream row lock is held for one round trip; SQLite batches event writes
// through its group committer).
//
// Statements are written with `?` placeholders (or `?N` to use parameter N
// again; one statement does not mix the two). SQLite runs them as they are,
// through its cached prepared statements; the PostgreSQL backend numbers them
// ($1, $2, …) once per statement text. Booleans need no dialect: both accept
// Go bools as parameters and the literals true and false, and scan their
// boolean columns into Go bools.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strings"

	"conclave/internal/store"
)

// Querier runs statements: outside a transaction, or inside one.
type Querier interface {
	// Exec runs a statement and returns how many rows it changed.
	Exec(ctx context.Context, query string, args ...any) (int64, error)
	Query(ctx context.Context, query string, args ...any) (Rows, error)
	// QueryRow runs a query for one row; its Scan reports no row as an error
	// for which errors.Is(err, sql.ErrNoRows) holds (pgx's does too).
	QueryRow(ctx context.Context, query string, args ...any) Row
}

// Rows is a query's result, read with Next and Scan, then closed.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// Row is one row of QueryRow.
type Row interface {
	Scan(dest ...any) error
}

// Lock names what a transaction serialises on, per user, with the others
// that take the same lock.
type Lock int

const (
	// LockBackups: key backup versions of a user (numbering, and the current
	// version check of PutRoomKeys).
	LockBackups Lock = iota
	// LockPushers: a user's pushers (the per-user limit).
	LockPushers
	// LockRoom: writing to a room (the key is the room ID), the same lock
	// the backends' own event writes take.
	LockRoom
)

// Backend is what a backend gives the shared areas.
type Backend interface {
	// Read runs reads outside a transaction (SQLite: the reader pool;
	// PostgreSQL: the pool).
	Read() Querier
	// Write runs a single-statement write (SQLite: the one writer
	// connection; PostgreSQL: the pool).
	Write() Querier
	// Tx runs fn in a write transaction, committing if it returns nil. fn
	// may run more than once (PostgreSQL retries a deadlock), so it must
	// reset what it collects.
	Tx(ctx context.Context, fn func(tx Querier) error) error
	// InsertAtNewPositions allocates len(rows) consecutive stream positions
	// inside tx and inserts rows[i] at the i-th of them: INSERT INTO table
	// (pos, cols…) VALUES (position, rows[i]…).
	InsertAtNewPositions(ctx context.Context, tx Querier, table string, cols []string, rows [][]any) error
	// AnnounceChange takes a stream position that no row records, inside
	// tx, where several processes share the database: its notification
	// tells the others, in order with everything else, that something they
	// cache changed (one-time key counts). SQLite, with one process, does
	// nothing.
	AnnounceChange(ctx context.Context, tx Querier) error
	// Lock serialises tx with the other transactions that take the same lock
	// for the same key, until it ends. (SQLite needs nothing: its one writer
	// connection runs write transactions one at a time.)
	Lock(ctx context.Context, tx Querier, what Lock, key string) error
	// IsUnique reports a uniqueness or primary-key violation.
	IsUnique(err error) bool
	// IsForeignKey reports a foreign-key violation.
	IsForeignKey(err error) bool
}

// Dialect is how a backend's SQL differs in spelling from the other's.
type Dialect struct {
	// ForUpdate ends a SELECT whose rows a transaction goes on to change:
	// " FOR UPDATE" where transactions run concurrently (PostgreSQL), empty
	// where write transactions run one at a time (SQLite).
	ForUpdate string
	// SkipLocked ends a SELECT choosing a row to take that a concurrent
	// transaction may be taking: " FOR UPDATE SKIP LOCKED", or empty.
	SkipLocked string
	// Collate follows a text column in ORDER BY so that it sorts by code
	// point: ` COLLATE "C"` (PostgreSQL's default follows the locale), or
	// empty (SQLite's default BINARY collation already does).
	Collate string
	// ArrayParams: a list is one array parameter (= ANY(?)) rather than one
	// parameter per value (IN (?, ?, …)).
	ArrayParams bool
	// MaxList bounds the parameters one statement spends on lists: longer
	// lists are sent in chunks.
	MaxList int
	// ApartPos is a query for the next negative event position (events
	// clients never see: outliers, soft-failed and rejected events).
	ApartPos string
	// ContentField is the SQL text of content.<key> of the event JSON in
	// column col (stored as bytes), NULL when absent.
	ContentField func(col, key string) string
	// SearchKey is the column of event_search holding an event's position
	// (rowid in SQLite's FTS5 table, pos in PostgreSQL's).
	SearchKey string
}

// In returns the condition "expr is one of vals" and args with the
// parameters it needs appended.
func (d *Dialect) In(expr string, vals []string, args []any) (string, []any) {
	if len(vals) == 0 {
		return "false", args
	}
	if d.ArrayParams {
		return expr + " = ANY(?)", append(args, vals)
	}
	args = slices.Grow(args, len(vals))
	for _, v := range vals {
		args = append(args, v)
	}
	return expr + " IN (" + strings.Repeat("?, ", len(vals)-1) + "?)", args
}

// Chunk is how many values each of lists lists in one statement may hold.
func (d *Dialect) Chunk(lists int) int {
	if d.ArrayParams {
		return d.MaxList // an array is one parameter
	}
	return d.MaxList / lists
}

// Shared implements the shared areas of store.Store on a backend; a
// backend's DB embeds it.
type Shared struct {
	b Backend
	d Dialect
}

// New returns the shared areas over b, whose SQL is spelt as d says.
func New(b Backend, d Dialect) *Shared {
	return &Shared{b: b, d: d}
}

func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	return err
}

// collect reads every row with scan and closes rows; no row is a nil slice.
func collect[T any](rows Rows, err error, scan func(r Rows, v *T) error) ([]T, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		var v T
		if err := scan(rows, &v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// queryStrings runs a query returning one text column.
func queryStrings(ctx context.Context, q Querier, query string, args ...any) ([]string, error) {
	rows, err := q.Query(ctx, query, args...)
	return collect(rows, err, func(r Rows, s *string) error { return r.Scan(s) })
}
