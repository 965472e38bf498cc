package postgres

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"conclave/internal/store"
)

// fedLocks makes one process at a time the sender to a federation
// destination: a session advisory lock per destination, all held on one
// dedicated connection of this process (outside the pools: a lock belongs to
// its session, and thousands of busy destinations must not take thousands
// of connections). A process that dies releases its locks with its session,
// so another process takes the destinations over at once; no lease expiry to
// wait for. If the connection fails, every lock it held is lost: their lost
// channel is closed and the senders stop.
type fedLocks struct {
	mu   sync.Mutex
	conn *pgx.Conn
	lost chan struct{} // closed when conn is dropped
	// held counts the destinations locked on conn: the keep-alive pings
	// only while there are some.
	held   int
	closed bool
	stop   chan struct{}
}

// fedLockTimeout bounds a lock statement; it runs on a context of its own so
// that a caller giving up never cancels a query on the shared connection
// (pgx closes a connection whose query was cancelled, losing every lock).
const fedLockTimeout = 10 * time.Second

// fedLockPing is how often the connection is checked while it holds locks.
const fedLockPing = 5 * time.Second

var _ store.FedLocker = (*DB)(nil)

// TryLockDestination implements store.FedLocker.
func (db *DB) TryLockDestination(ctx context.Context, dest string) (func(), <-chan struct{}, bool, error) {
	l := &db.fed
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, nil, false, errClosedLocks
	}
	if l.conn == nil {
		cctx, cancel := context.WithTimeout(ctx, fedLockTimeout)
		conn, err := pgx.ConnectConfig(cctx, db.pool.Config().ConnConfig.Copy())
		cancel()
		if err != nil {
			return nil, nil, false, err
		}
		l.conn, l.lost, l.held = conn, make(chan struct{}), 0
		if l.stop == nil {
			l.stop = make(chan struct{})
			go l.keepAlive()
		}
	}
	qctx, cancel := context.WithTimeout(context.Background(), fedLockTimeout)
	defer cancel()
	var ok bool
	// One 64-bit key space with the other single-key advisory locks; the
	// prefix keeps it apart from them.
	if err := l.conn.QueryRow(qctx, `SELECT pg_try_advisory_lock(hashtextextended('fedsender:' || $1, 0))`, dest).Scan(&ok); err != nil {
		l.dropLocked()
		return nil, nil, false, err
	}
	if !ok {
		return nil, nil, false, nil
	}
	l.held++
	lost := l.lost
	var once sync.Once
	unlock := func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.conn == nil || l.lost != lost {
				return // the session, and the lock with it, is gone
			}
			l.held--
			uctx, cancel := context.WithTimeout(context.Background(), fedLockTimeout)
			defer cancel()
			if _, err := l.conn.Exec(uctx, `SELECT pg_advisory_unlock(hashtextextended('fedsender:' || $1, 0))`, dest); err != nil {
				l.dropLocked()
			}
		})
	}
	return unlock, lost, true, nil
}

var errClosedLocks = errors.New("store: closed")

// dropLocked closes the connection: its locks are released by the server
// (or already were), and their holders told. l.mu is held.
func (l *fedLocks) dropLocked() {
	if l.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	l.conn.Close(ctx)
	cancel()
	close(l.lost)
	l.conn, l.held = nil, 0
}

// keepAlive notices a failed connection while locks are held on it, so
// their holders stop sending instead of carrying on unprotected.
func (l *fedLocks) keepAlive() {
	t := time.NewTicker(fedLockPing)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		l.mu.Lock()
		if l.conn != nil && l.held > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), fedLockTimeout)
			if _, err := l.conn.Exec(ctx, `SELECT 1`); err != nil {
				l.dropLocked()
			}
			cancel()
		}
		l.mu.Unlock()
	}
}

// close releases every lock and stops the keep-alive. The locks are
// released explicitly first: the server ends a closed session a moment
// after the client goes, and another process should not find them held
// meanwhile.
func (l *fedLocks) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	if l.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		l.conn.Exec(ctx, `SELECT pg_advisory_unlock_all()`)
		cancel()
	}
	l.dropLocked()
	if l.stop != nil {
		close(l.stop)
	}
}
