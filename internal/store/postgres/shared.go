package postgres

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"conclave/internal/changes"
	"conclave/internal/store/sqlstore"
)

// The PostgreSQL side of the areas in store/sqlstore: statements on the
// pool, numbered once per statement text (numbered), prepared once per
// connection by pgx's statement cache as before.

var dialect = sqlstore.Dialect{
	ForUpdate:   " FOR UPDATE",
	SkipLocked:  " FOR UPDATE SKIP LOCKED",
	Collate:     ` COLLATE "C"`,
	ArrayParams: true,
	MaxList:     maxInArgs,
	SearchKey:   "pos",
	ApartPos:    `SELECT -nextval('events_apart_pos')`,
	ContentField: func(col, key string) string {
		return "(convert_from(" + col + ", 'UTF8')::jsonb #>> '{content," + key + "}')"
	},
}

type backend struct{ db *DB }

var _ sqlstore.Backend = backend{}

func (b backend) Read() sqlstore.Querier  { return sharedQuerier[*pgxpool.Pool]{b.db.pool} }
func (b backend) Write() sqlstore.Querier { return sharedQuerier[*pgxpool.Pool]{b.db.pool} }

func (b backend) Tx(ctx context.Context, fn func(tx sqlstore.Querier) error) error {
	return b.db.tx(ctx, func(tx pgx.Tx) error { return fn(sharedQuerier[pgx.Tx]{tx}) })
}

// InsertAtNewPositions sends the allocation with the rows as one batch: one
// round trip under the stream row lock, which is then held to the commit only.
func (b backend) InsertAtNewPositions(ctx context.Context, q sqlstore.Querier, table string, cols []string, rows [][]any) error {
	if len(rows) == 0 {
		return nil
	}
	tx := q.(sharedQuerier[pgx.Tx]).q
	var batch pgx.Batch
	batch.Queue(setMarksSQL, changes.Payload(ctx))
	batch.Queue(`UPDATE stream SET pos = pos + $1 WHERE id = 1`, len(rows))
	var sb strings.Builder
	sb.WriteString(`INSERT INTO ` + table + ` (pos, ` + strings.Join(cols, ", ") + `) VALUES (` + lastPosSQL + ` - $1`)
	for i := range cols {
		sb.WriteString(", $" + strconv.Itoa(i+2))
	}
	sb.WriteString(")")
	query := sb.String()
	for i, r := range rows {
		// Row i takes the i-th position: lastPosSQL - (n-1-i).
		batch.Queue(query, append([]any{len(rows) - 1 - i}, r...)...)
	}
	return tx.SendBatch(ctx, &batch).Close()
}

// AnnounceChange is called last in the transaction: the stream row stays
// locked until the commit (changes/feed.go reads the notification).
func (backend) AnnounceChange(ctx context.Context, q sqlstore.Querier) error {
	var b pgx.Batch
	b.Queue(setMarksSQL, changes.Payload(ctx))
	b.Queue(`UPDATE stream SET pos = pos + 1 WHERE id = 1`)
	return q.(sharedQuerier[pgx.Tx]).q.SendBatch(ctx, &b).Close()
}

func (backend) Lock(ctx context.Context, q sqlstore.Querier, what sqlstore.Lock, key string) error {
	var err error
	switch what {
	case sqlstore.LockBackups:
		_, err = q.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, backupLockClass, key)
	case sqlstore.LockRoom:
		_, err = q.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, roomLockClass, key)
	case sqlstore.LockPushers:
		_, err = q.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('pushers:' || $1, 0))`, key)
	default:
		panic("postgres: unknown lock")
	}
	return err
}

func (backend) IsUnique(err error) bool     { return isConstraint(err) }
func (backend) IsForeignKey(err error) bool { return isForeignKey(err) }

// sharedQuerier runs the shared statements on the pool, outside a transaction,
// or inside one (pgx.Tx).
type sharedQuerier[Q querier] struct{ q Q }

func (q sharedQuerier[Q]) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := q.q.Exec(ctx, numbered(query), args...)
	return tag.RowsAffected(), err
}

func (q sharedQuerier[Q]) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	return q.q.Query(ctx, numbered(query), args...)
}

func (q sharedQuerier[Q]) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	return q.q.QueryRow(ctx, numbered(query), args...)
}

// maxNumbered bounds the cache of numbered statements: the shared areas
// have a few hundred statement texts; past the bound, texts are numbered on
// every use.
const maxNumbered = 4096

var (
	numberedCache sync.Map // statement as written -> numbered
	numberedCount atomic.Int64
)

// numbered rewrites the `?` placeholders of a shared statement into
// PostgreSQL's numbered ones: each `?` takes the next number, `?N` becomes
// $N. Quoted strings, quoted identifiers and comments are left alone.
func numbered(query string) string {
	if q, ok := numberedCache.Load(query); ok {
		return q.(string)
	}
	out := renumber(query)
	if numberedCount.Load() < maxNumbered {
		if _, loaded := numberedCache.LoadOrStore(query, out); !loaded {
			numberedCount.Add(1)
		}
	}
	return out
}

func renumber(query string) string {
	if strings.IndexByte(query, '?') < 0 {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case c == '\'' || c == '"':
			// A quoted string or identifier, to its closing quote (a doubled
			// quote inside is two quoted stretches in a row: same result).
			j := strings.IndexByte(query[i+1:], c)
			if j < 0 {
				j = len(query) - i - 2 // unclosed: to the end
			}
			b.WriteString(query[i : i+j+2])
			i += j + 1
		case c == '-' && strings.HasPrefix(query[i:], "--"):
			j := strings.IndexByte(query[i:], '\n')
			if j < 0 {
				j = len(query) - i
			}
			b.WriteString(query[i : i+j])
			i += j - 1
		case c == '/' && strings.HasPrefix(query[i:], "/*"):
			j := strings.Index(query[i:], "*/")
			if j < 0 {
				j = len(query) - i - 2
			}
			b.WriteString(query[i : i+j+2])
			i += j + 1
		case c == '?':
			j := i + 1
			for j < len(query) && query[j] >= '0' && query[j] <= '9' {
				j++
			}
			if j > i+1 {
				b.WriteString("$" + query[i+1:j])
				i = j - 1
			} else {
				n++
				b.WriteString("$" + strconv.Itoa(n))
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
