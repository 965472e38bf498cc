// Package postgres implements the store interfaces on PostgreSQL through
// jackc/pgx v5: a pgxpool connection pool, statements prepared once per
// connection by pgx's statement cache, and embedded numbered migrations
// (migrations/NNNN_name.sql, aligned with the SQLite ones: the same number
// makes the same change in both backends).
//
// # Stream positions
//
// Every change /sync reports takes the next position of one global stream,
// and a reader that sees position N must already see every position below N
// (a sync token is one number). A PostgreSQL sequence alone does not give
// that: transaction A may take 6 and B 7, and B commit first, so a reader
// would skip 6 for ever. Here positions come from the single row of the
// stream table (UPDATE … RETURNING), whose row lock is held until the
// allocating transaction ends. The next allocation waits for that commit (or
// rollback), so positions are committed in order and `SELECT pos FROM
// stream` is always the highest position below which everything is
// committed. The price is that writers taking positions are serialised from
// their allocation to their commit, so every write allocates as late as it
// can and never waits for the client while it holds the row: the
// allocation (UPDATE stream … in pipeline.allocPos, or queued first in a
// batch) goes out in the same round trip as the rows that use it, which
// find their positions with lastPosSQL, and the commit follows in that
// round trip too (a pipeline's implicit transaction) or in the next one.
// Tracking the maximum contiguous committed position instead would let
// commits overlap, at the cost of a more complex reader side.
//
// # Per-room serialisation
//
// PersistEvents takes pg_advisory_xact_lock(roomLockClass, hashtext(room_id))
// first, then checks that the forward extremities the room service built on
// (NewEvent.PrevEvents of the first event) are still the room's: another
// process may have appended to the room since this one loaded it. If not it
// returns store.ErrRoomChanged, and the room service reloads the room. Lock,
// check, allocation and rows are one pipeline (one round trip): the check is
// a statement that divides by zero when the extremities differ, which aborts
// the implicit transaction before anything is allocated or written.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"conclave/internal/store"
	"conclave/internal/store/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Advisory lock classes (the first key of the two-key advisory locks).
const (
	migrateLockClass = 0x436f6e00 // "Con\0": schema migrations
	roomLockClass    = 0x436f6e01 // per-room writes
	filterLockClass  = 0x436f6e02 // filter IDs per user
	backupLockClass  = 0x436f6e03 // backup versions per user
	roomWriteClass   = 0x436f6e04 // LockRoom: a room's writer across processes
)

// DB is the PostgreSQL store.
type DB struct {
	// The areas both SQL backends share (store/sqlstore, shared.go).
	*sqlstore.Shared

	pool *pgxpool.Pool
	// locks holds the sessions of LockRoom's advisory locks, apart from
	// pool: a writer holds its lock while it uses pool, so sharing one pool
	// could exhaust it with lock holders waiting for connections.
	locks *pgxpool.Pool
	// fed holds the federation senders' destination locks (fedlock.go).
	fed fedLocks
}

var _ store.Store = (*DB)(nil)

// Open connects to the database named by dsn (postgres://…) and applies the
// pending migrations. Pool settings may be given in the DSN (pool_max_conns…).
func Open(ctx context.Context, dsn string) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("database URL: %w", err)
	}
	if !strings.Contains(dsn, "pool_max_conns") {
		cfg.MaxConns = 16
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	db := &DB{pool: pool}
	db.Shared = sqlstore.New(backend{db}, dialect)
	if err := db.migrate(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("migrate: %w", err)
	}
	lcfg := cfg.Copy()
	lcfg.MaxConns = max(cfg.MaxConns/2, 2)
	lcfg.MinConns = 0
	if db.locks, err = pgxpool.NewWithConfig(ctx, lcfg); err != nil {
		pool.Close()
		return nil, err
	}
	return db, nil
}

// Close closes the pools.
func (db *DB) Close() error {
	db.fed.close()
	db.locks.Close()
	db.pool.Close()
	return nil
}

// IntegrityCheck checks that the server answers and the schema is in place
// (PostgreSQL keeps its own consistency; this is the liveness half of
// SQLite's integrity check).
func (db *DB) IntegrityCheck(ctx context.Context) error {
	var n int
	return db.pool.QueryRow(ctx, `SELECT count(*) FROM stream`).Scan(&n)
}

func (db *DB) migrate(ctx context.Context) error {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	// Several processes may start at once: one migrates, the others wait.
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1, 0)`, migrateLockClass); err != nil {
		return err
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1, 0)`, migrateLockClass)
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ts BIGINT NOT NULL)`); err != nil {
		return err
	}
	entries, err := fs.ReadDir(migrations, "migrations")
	if err != nil {
		return err
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	for _, e := range entries {
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		version, err := strconv.Atoi(num)
		if !ok || err != nil {
			return fmt.Errorf("migration %s: name must start with a number and _", name)
		}
		var applied bool
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)`, version).Scan(&applied); err != nil {
			return err
		}
		if applied {
			continue
		}
		body, err := migrations.ReadFile("migrations/" + name)
		if err != nil {
			return err
		}
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			// No arguments: the simple protocol runs the whole file.
			if _, err := tx.Exec(ctx, string(body)); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name, applied_ts) VALUES ($1, $2, $3)`, version, name, time.Now().UnixMilli())
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// querier is what both the pool and a transaction offer.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// maxTxAttempts bounds the retries of a transaction PostgreSQL aborted
// because of a deadlock or a serialisation failure.
const maxTxAttempts = 5

// tx runs fn in a transaction, committing if it returns nil. fn may run more
// than once (after a deadlock), so it must reset what it collects.
func (db *DB) tx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := txOnce(ctx, db.pool, fn)
		if err == nil || attempt == maxTxAttempts || !retryable(err) || ctx.Err() != nil {
			return err
		}
	}
}

// txOnce is pgx.BeginFunc with a commit that the caller's context cannot
// interrupt. pgx answers a context cancelled during COMMIT with an error
// although the commit may have reached the server, and callers act on the
// answer (caches, wake-ups, a client's retry deduplicated as already done):
// a write must be reported failed only if it did not commit. fn itself runs
// under ctx: a statement cut short rolls the whole transaction back, which
// is a failure without doubt.
func txOnce(ctx context.Context, pool *pgxpool.Pool, fn func(tx pgx.Tx) error) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	bg := context.WithoutCancel(ctx)
	defer tx.Rollback(bg) // nothing once committed
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(bg)
}

func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// MaxStreamPos implements store.Stream.
func (db *DB) MaxStreamPos(ctx context.Context) (int64, error) {
	var pos int64
	err := db.pool.QueryRow(ctx, `SELECT pos FROM stream WHERE id = 1`).Scan(&pos)
	return pos, err
}

// isConstraint reports whether err is a uniqueness or primary-key violation.
func isConstraint(err error) bool { return pgCode(err) == "23505" }

// isForeignKey reports a foreign-key violation.
func isForeignKey(err error) bool { return pgCode(err) == "23503" }

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func notFound(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ErrNotFound
	}
	return err
}

// queryStrings runs a query returning one text column.
func queryStrings(ctx context.Context, q querier, query string, args ...any) ([]string, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if len(out) == 0 {
		out = nil
	}
	return out, err
}

// argList numbers the parameters of a query built piece by piece.
type argList []any

func (a *argList) add(v any) string {
	*a = append(*a, v)
	return "$" + strconv.Itoa(len(*a))
}

// likeEscaper escapes LIKE metacharacters for ESCAPE '\'.
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
