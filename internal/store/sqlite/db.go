// Package sqlite implements the store interfaces on an embedded SQLite
// database (modernc.org/sqlite, pure Go, so the binary builds statically).
//
// Writes go through one connection and are serialised; reads use a pool.
// The database runs in WAL mode with synchronous=FULL, so a transaction that
// has committed survives power loss: the server answers 200 only after that.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"conclave/internal/filelock"
	"conclave/internal/store"
	"conclave/internal/store/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// DB is the SQLite store.
type DB struct {
	// The areas both SQL backends share (store/sqlstore, shared.go).
	*sqlstore.Shared

	w *conn // single writer connection
	r *conn // reader pool

	commit *committer // batches PersistEvents into shared transactions (groupcommit.go)

	// maxPos is the stream position as of the last commit, read back from
	// the database after every write transaction: /sync asks for it on
	// every call, and this process is the database's only writer.
	maxPos atomic.Int64

	checkpoints *checkpointer // WAL checkpoints off the commit path (checkpoint.go)

	lock *filelock.Lock // held while open: see lockDatabase
}

var _ store.Store = (*DB)(nil)

// Open opens (creating if needed) the database at path and applies the
// pending migrations.
func Open(ctx context.Context, path string) (*DB, error) {
	lock, err := lockDatabase(path)
	if err != nil {
		return nil, err
	}
	db, err := open(ctx, path)
	if err != nil {
		lock.Close()
		return nil, err
	}
	db.lock = lock
	return db, nil
}

// ErrInUse is returned by Open while another process has the database open.
var ErrInUse = errors.New("in use by another process")

// lockDatabase takes an exclusive lock on PATH.lock for as long as the
// database is open. This store assumes it is the database's only user (one
// writer connection, maxPos read back after its own commits, in-memory
// caches above it), so a second server on the same data directory, or a
// migration reading the file under a running server, must be refused: SQLite's
// own locks would let both in and each would serve what it believes is the
// whole truth. The kernel drops the lock when the process dies, so a crash
// never leaves a stale lock behind. Filesystems without flock get no lock.
func lockDatabase(path string) (*filelock.Lock, error) {
	lp := path + ".lock"
	l, err := filelock.TryLock(lp)
	switch {
	case err == nil:
		return l, nil
	case errors.Is(err, filelock.ErrUnsupported):
		return nil, nil
	case errors.Is(err, filelock.ErrLocked):
		who := "a process"
		if pid := filelock.Holder(lp); pid != "" {
			who = "pid " + pid
		}
		return nil, fmt.Errorf("database %s is %w (%s holds %s): stop it first", path, ErrInUse, who, lp)
	}
	return nil, fmt.Errorf("lock database %s: %w", path, err)
}

func open(ctx context.Context, path string) (*DB, error) {
	q := url.Values{}
	// temp_store(MEMORY): the statement journals of the group committer's
	// savepoints and multi-row inserts (notifications) stay in memory
	// instead of a temporary file written page by page; they are discarded
	// at commit, so durability (the WAL) is unchanged.
	for _, p := range []string{"journal_mode(WAL)", "synchronous(FULL)", "busy_timeout(10000)", "foreign_keys(1)", "cache_size(-32000)", "wal_autocheckpoint(0)", "temp_store(MEMORY)"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	dsn := "file:" + path + "?" + q.Encode()
	w, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	rq := url.Values{}
	for _, p := range []string{"busy_timeout(10000)", "foreign_keys(1)", "cache_size(-16000)", "query_only(1)"} {
		rq.Add("_pragma", p)
	}
	r, err := sql.Open("sqlite", "file:"+path+"?"+rq.Encode())
	if err != nil {
		w.Close()
		return nil, err
	}
	r.SetMaxOpenConns(8)
	r.SetMaxIdleConns(8)
	db := &DB{w: newConn(w), r: newConn(r)}
	db.Shared = sqlstore.New(backend{db}, dialect)
	if err := db.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate %s: %w", path, err)
	}
	db.w.afterWrite = db.refreshMaxPos
	if err := db.startCheckpointer(path); err != nil {
		db.Close()
		return nil, err
	}
	db.startCommitter()
	return db, nil
}

// Close closes the database.
func (db *DB) Close() error {
	if db.commit != nil {
		db.stopCommitter()
	}
	db.stopCheckpointer()
	err := errors.Join(db.r.Close(), db.w.Close())
	// Released last: the next opener may rely on our connections being gone.
	return errors.Join(err, db.lock.Close())
}

// IntegrityCheck runs SQLite's integrity check; tests and the crash test use it.
func (db *DB) IntegrityCheck(ctx context.Context) error {
	var res string
	if err := db.r.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&res); err != nil {
		return err
	}
	if res != "ok" {
		return fmt.Errorf("integrity check: %s", res)
	}
	return nil
}

func (db *DB) migrate(ctx context.Context) error {
	if _, err := db.w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ts INTEGER NOT NULL)`); err != nil {
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
		var applied int
		if err := db.w.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, version).Scan(&applied); err != nil {
			return err
		}
		if applied > 0 {
			continue
		}
		body, err := migrations.ReadFile("migrations/" + name)
		if err != nil {
			return err
		}
		err = db.tx(ctx, func(tx *Tx) error {
			// A migration holds several statements: run it unprepared.
			if _, err := tx.Tx.ExecContext(ctx, string(body)); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_ts) VALUES (?, ?, ?)`, version, name, time.Now().UnixMilli())
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// tx runs fn in a write transaction, committing if it returns nil.
func (db *DB) tx(ctx context.Context, fn func(tx *Tx) error) error {
	stx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	tx := &Tx{Tx: stx, c: db.w}
	err = fn(tx)
	if err != nil {
		tx.Rollback()
	} else {
		err = tx.Commit()
	}
	bg := context.WithoutCancel(ctx)
	if err == nil {
		db.refreshMaxPos(bg)
	}
	db.w.preparePending(bg)
	return err
}

// nextPos allocates n consecutive stream positions inside tx and returns the first.
func nextPos(ctx context.Context, tx *Tx, n int) (int64, error) {
	var last int64
	if err := tx.QueryRowContext(ctx, `UPDATE stream SET pos = pos + ? WHERE id = 1 RETURNING pos`, n).Scan(&last); err != nil {
		return 0, err
	}
	return last - int64(n) + 1, nil
}

// MaxStreamPos implements store.Stream.
func (db *DB) MaxStreamPos(ctx context.Context) (int64, error) {
	if pos := db.maxPos.Load(); pos > 0 {
		return pos, nil
	}
	var pos int64
	err := db.r.QueryRowContext(ctx, `SELECT pos FROM stream WHERE id = 1`).Scan(&pos)
	return pos, err
}

// refreshMaxPos reads the committed stream position on the writer into
// maxPos after a commit. Two refreshes may race, so maxPos only ever grows
// (a sync token must never go backwards). A failed read sets it to 0, which
// makes MaxStreamPos ask the database until a refresh succeeds.
func (db *DB) refreshMaxPos(ctx context.Context) {
	var pos int64
	if err := db.w.QueryRowContext(ctx, `SELECT pos FROM stream WHERE id = 1`).Scan(&pos); err != nil {
		db.maxPos.Store(0)
		return
	}
	for {
		cur := db.maxPos.Load()
		if cur != 0 && pos <= cur {
			return
		}
		if db.maxPos.CompareAndSwap(cur, pos) {
			return
		}
	}
}

// isConstraint reports whether err is a uniqueness or primary-key violation.
func isConstraint(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return true
		}
	}
	return false
}

func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	return err
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// placeholders returns "?,?,?" for n parameters.
func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?,", n-1) + "?"
}

func stringArgs(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// queryStrings runs a query returning one text column.
func queryStrings(ctx context.Context, q queryer, query string, args ...any) ([]string, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}
