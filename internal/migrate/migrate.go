// Package migrate copies a whole Conclave server from its SQLite database to
// an empty PostgreSQL database (`conclave migrate`), one way.
//
// The copy is generic and table-driven: both schemas are read from the
// databases themselves, every table is copied into the PostgreSQL table of
// the same name over the columns both have, with the values converted per
// column type (integer flags → boolean, blobs → bytea, JSON text → jsonb).
// Whatever the two schemas do not have in common must be decided in
// decisions.go, or the migration refuses to run; a table a new migration
// adds to both backends is copied with no change here.
//
// Everything is written in one PostgreSQL transaction: the rows go in with
// COPY, identity sequences and the stream position are advanced past the
// copied values, the row counts of every table are compared with the
// source's, and only then is the transaction committed. On any error or
// mismatch nothing is left in the target. The source is read inside one
// SQLite write-locked transaction, a consistent snapshot no writer can
// change, and never written (except that pending SQLite migrations are
// applied first, as `conclave serve` would on start).
package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"conclave/internal/store/postgres"
	"conclave/internal/store/sqlite"
)

// SQLiteFile is the database file's name inside a data directory
// (config.Config.SQLitePath).
const SQLiteFile = "conclave.db"

// Options says what to migrate.
type Options struct {
	From string // sqlite:PATH, PATH the data directory or the database file
	To   string // postgres://… or postgresql://…
	Out  io.Writer
}

// TableResult is one line of the summary.
type TableResult struct {
	Name         string
	Action       string // "copied", "rebuilt", "skipped"
	SQLite, PG   int64  // row counts (-1: not counted)
	Why          string
	Mismatch     bool
	onlySQLite   bool
	onlyPostgres bool
}

// Report is what a migration did.
type Report struct {
	SQLitePath string
	DataDir    string
	Tables     []TableResult
	Rows       int64 // rows copied
	StreamPos  int64
	Duration   time.Duration
}

// ErrMismatch is returned (wrapped) when the row counts differ after the copy.
var ErrMismatch = errors.New("row counts differ after the copy")

// ParseFrom resolves sqlite:PATH to the database file and the data directory.
func ParseFrom(from string) (file, dataDir string, err error) {
	path, ok := strings.CutPrefix(from, "sqlite:")
	if !ok || path == "" {
		return "", "", fmt.Errorf("--from must be sqlite:PATH (the data directory or the SQLite file), not %q", from)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", "", fmt.Errorf("--from: %w", err)
	}
	if fi.IsDir() {
		file = filepath.Join(path, SQLiteFile)
		if fi, err = os.Stat(file); err != nil {
			return "", "", fmt.Errorf("--from: no %s in the directory %s: %w", SQLiteFile, path, err)
		}
		dataDir = path
	} else {
		file, dataDir = path, filepath.Dir(path)
	}
	if !fi.Mode().IsRegular() {
		return "", "", fmt.Errorf("--from: %s is not a regular file", file)
	}
	return file, dataDir, nil
}

// CheckTo checks the form of the target URL.
func CheckTo(to string) error {
	if !strings.HasPrefix(to, "postgres://") && !strings.HasPrefix(to, "postgresql://") {
		return fmt.Errorf("--to must be a postgres:// URL, not %q", redact(to))
	}
	if _, err := pgxpool.ParseConfig(to); err != nil {
		return fmt.Errorf("--to: %v", err)
	}
	return nil
}

// redact hides the password of a URL for messages.
func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.User == nil {
		return dsn
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// Run migrates. The report is returned also on a count mismatch (with an
// error wrapping ErrMismatch), for the summary.
func Run(ctx context.Context, opt Options) (*Report, error) {
	start := time.Now()
	file, dataDir, err := ParseFrom(opt.From)
	if err != nil {
		return nil, err
	}
	if err := CheckTo(opt.To); err != nil {
		return nil, err
	}
	rep := &Report{SQLitePath: file, DataDir: dataDir}

	// The target: the PostgreSQL store's own open path applies its
	// migrations. Refuse a target with data before touching the source.
	pdb, err := postgres.Open(ctx, opt.To)
	if err != nil {
		return nil, fmt.Errorf("target: %w", err)
	}
	pdb.Close()
	pcfg, err := pgxpool.ParseConfig(opt.To)
	if err != nil {
		return nil, fmt.Errorf("--to: %w", err)
	}
	conn, err := pgx.ConnectConfig(ctx, pcfg.ConnConfig)
	if err != nil {
		return nil, fmt.Errorf("target: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := checkEmpty(ctx, conn); err != nil {
		return nil, err
	}

	// The source: bring it to the latest schema (what serve does on start),
	// then read it through one connection inside one write-locked
	// transaction: a snapshot that a server still running cannot change.
	// sqlite.Open refuses while a server has the file open, and sdb stays
	// open (holding the database's lock file) until the copy is done, so no
	// server can start on the file meanwhile.
	sdb, err := sqlite.Open(ctx, file)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	defer sdb.Close()
	src, err := sql.Open("sqlite", "file:"+file+"?_pragma=busy_timeout(5000)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	defer src.Close()
	src.SetMaxOpenConns(1)
	stx, err := src.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("source: lock %s (is the server still running?): %w", file, err)
	}
	defer stx.Rollback()

	if err := compareVersions(ctx, stx, conn); err != nil {
		return nil, err
	}
	sSchema, err := readSQLiteSchema(ctx, stx)
	if err != nil {
		return nil, fmt.Errorf("source schema: %w", err)
	}
	seqs, err := sqliteSequences(ctx, stx)
	if err != nil {
		return nil, fmt.Errorf("source schema: %w", err)
	}
	pSchema, err := readPGSchema(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("target schema: %w", err)
	}
	fks, err := pgForeignKeys(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("target schema: %w", err)
	}
	trig, err := pgTriggerTables(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("target schema: %w", err)
	}
	plans, err := plan(sSchema, pSchema, fks, trig)
	if err != nil {
		return nil, fmt.Errorf("the schemas differ in ways internal/migrate does not cover:\n%w", err)
	}

	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if err := checkEmpty(ctx, tx); err != nil {
			return err
		}
		return copyAll(ctx, stx, tx, plans, seqs, rep)
	})
	rep.Duration = time.Since(start)
	if err != nil {
		if errors.Is(err, ErrMismatch) {
			return rep, err
		}
		return nil, err
	}
	return rep, nil
}

// checkEmpty refuses a target that holds data: any row in a table other than
// the seeded ones and those whose target rows are kept (decisions.go), or a
// stream that moved.
func checkEmpty(ctx context.Context, q pgQuerier) error {
	tables, err := readPGSchema(ctx, q)
	if err != nil {
		return fmt.Errorf("target schema: %w", err)
	}
	names := make([]string, 0, len(tables))
	for n := range tables {
		names = append(names, n)
	}
	sort.Strings(names)
	// users and events first: the likeliest, and the clearest message.
	sort.SliceStable(names, func(i, j int) bool { return rank(names[i]) < rank(names[j]) })
	for _, n := range names {
		if _, seeded := seededTables[n]; seeded || tableDecisions[n].keepTarget {
			continue
		}
		var has bool
		if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+pgx.Identifier{n}.Sanitize()+`)`).Scan(&has); err != nil {
			return fmt.Errorf("target: %w", err)
		}
		if has {
			return fmt.Errorf("the target database is not empty (table %s has rows): migrate copies into a new, empty database only", n)
		}
	}
	var pos int64
	if err := q.QueryRow(ctx, `SELECT coalesce(max(pos), 0) FROM stream`).Scan(&pos); err != nil {
		return fmt.Errorf("target: %w", err)
	}
	if pos != 0 {
		return fmt.Errorf("the target database is not empty (stream position %d): migrate copies into a new, empty database only", pos)
	}
	return nil
}

func rank(table string) int {
	switch table {
	case "users":
		return 0
	case "events":
		return 1
	}
	return 2
}

// compareVersions refuses when the two databases are not at the same
// migration versions (a source written by a newer conclave than this one).
func compareVersions(ctx context.Context, stx *sql.Tx, conn *pgx.Conn) error {
	sv := map[int]bool{}
	rows, err := stx.QueryContext(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return err
		}
		sv[v] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	pv := map[int]bool{}
	prow, err := conn.Query(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	vs, err := pgx.CollectRows(prow, pgx.RowTo[int32])
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	for _, v := range vs {
		pv[int(v)] = true
	}
	for v := range sv {
		if !pv[v] {
			return fmt.Errorf("the SQLite database has migration %04d, which this conclave's PostgreSQL schema lacks: run the migration with the conclave version that wrote it", v)
		}
	}
	for v := range pv {
		if !sv[v] {
			return fmt.Errorf("the PostgreSQL schema has migration %04d, which the SQLite database lacks", v)
		}
	}
	return nil
}
