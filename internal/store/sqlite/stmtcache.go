package sqlite

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
)

// maxCachedStmts bounds each connection pool's statement cache: queries
// built with a variable number of placeholders would otherwise grow it
// without end. Past the bound, queries run unprepared as before.
const maxCachedStmts = 1024

// conn is a connection pool whose queries run as prepared statements cached
// by query text. Parsing and planning a statement costs SQLite more than
// running most of ours (a quarter of the server's CPU under the messages
// load before this cache), so every query text is prepared once per
// connection and reused.
type conn struct {
	*sql.DB
	stmts   sync.Map // query text -> *sql.Stmt
	n       atomic.Int64
	pending sync.Map // query texts a transaction ran unprepared (see Tx)
	// afterWrite, if set, runs after every statement run outside a
	// transaction through ExecContext (the writer's stream-position refresh).
	afterWrite func(ctx context.Context)
}

func newConn(db *sql.DB) *conn { return &conn{DB: db} }

// stmt returns the cached statement for query, preparing it on first use;
// nil when the cache is full or the query does not prepare (the caller then
// runs it unprepared, which reports the same error).
func (c *conn) stmt(ctx context.Context, query string) *sql.Stmt {
	if st, ok := c.stmts.Load(query); ok {
		return st.(*sql.Stmt)
	}
	if c.n.Load() >= maxCachedStmts {
		return nil
	}
	st, err := c.DB.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	if prev, loaded := c.stmts.LoadOrStore(query, st); loaded {
		st.Close()
		return prev.(*sql.Stmt)
	}
	c.n.Add(1)
	return st
}

func (c *conn) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := c.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return c.DB.QueryContext(ctx, query, args...)
}

func (c *conn) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := c.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return c.DB.QueryRowContext(ctx, query, args...)
}

func (c *conn) ExecContext(ctx context.Context, query string, args ...any) (res sql.Result, err error) {
	if c.afterWrite != nil {
		defer c.afterWrite(context.WithoutCancel(ctx))
	}
	if st := c.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return c.DB.ExecContext(ctx, query, args...)
}

// Close closes the cached statements and the pool.
func (c *conn) Close() error {
	c.stmts.Range(func(_, st any) bool { st.(*sql.Stmt).Close(); return true })
	return c.DB.Close()
}

// Tx is a write transaction whose statements come from the writer's cache.
// The writer pool has one connection, so a cached statement is already
// prepared on the transaction's connection and StmtContext only rebinds it.
// A statement not yet cached cannot be prepared on the pool while the
// transaction holds its only connection: it runs unprepared and is noted,
// and preparePending prepares it once the transaction has ended.
type Tx struct {
	*sql.Tx
	c *conn
}

func (tx *Tx) cached(query string) *sql.Stmt {
	if st, ok := tx.c.stmts.Load(query); ok {
		return st.(*sql.Stmt)
	}
	if tx.c.n.Load() < maxCachedStmts {
		tx.c.pending.Store(query, struct{}{})
	}
	return nil
}

func (tx *Tx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := tx.cached(query); st != nil {
		return tx.Tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	return tx.Tx.QueryContext(ctx, query, args...)
}

func (tx *Tx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := tx.cached(query); st != nil {
		return tx.Tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return tx.Tx.QueryRowContext(ctx, query, args...)
}

func (tx *Tx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := tx.cached(query); st != nil {
		return tx.Tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return tx.Tx.ExecContext(ctx, query, args...)
}

// preparePending prepares the statements transactions ran unprepared. Call
// it only when no transaction of this pool is open.
func (c *conn) preparePending(ctx context.Context) {
	c.pending.Range(func(q, _ any) bool {
		c.pending.Delete(q)
		c.stmt(ctx, q.(string))
		return true
	})
}
