package sqlite

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"conclave/internal/store"
	"conclave/internal/store/sqlstore"
)

// Group commit: PersistEvents calls from different rooms that arrive while a
// commit is in flight are written in the next transaction together, so many
// rooms share one fsync. Each call still sees its own outcome (a savepoint per
// call: one call's failure rolls back only its own rows), and nobody is
// answered before the shared commit is durable. Calls for one room never
// overlap: the room service holds the room's writer lock until its call
// returns.

// maxGroup bounds how many calls one transaction carries.
const maxGroup = 128

type persistRequest struct {
	roomID string
	events []store.NewEvent
	// fn, when set, is the write instead of events (PersistGraphEvent).
	fn   func(ctx context.Context, tx *Tx) error
	done chan persistResult
}

type persistResult struct {
	positions []int64
	err       error
}

type committer struct {
	mu     sync.RWMutex // held for reading while enqueueing, for writing by stop
	closed bool
	queue  chan *persistRequest
	done   chan struct{}
	// observe, when set, is told each transaction's number of calls.
	observe atomic.Pointer[func(calls int)]
}

// ObserveGroupCommit sets f to be called after every group-commit
// transaction with the number of PersistEvents calls it carried (metrics);
// f must be quick. It may be called at any time.
func (db *DB) ObserveGroupCommit(f func(calls int)) { db.commit.observe.Store(&f) }

var errClosed = errors.New("store: closed")

func (db *DB) startCommitter() {
	db.commit = &committer{queue: make(chan *persistRequest, maxGroup), done: make(chan struct{})}
	go db.commitLoop()
}

// stopCommitter lets the queued calls finish, then stops the loop.
func (db *DB) stopCommitter() {
	c := db.commit
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.queue)
	}
	c.mu.Unlock()
	<-c.done
}

// PersistEvents implements store.Rooms through the group committer.
func (db *DB) PersistEvents(ctx context.Context, roomID string, events []store.NewEvent) ([]int64, error) {
	req := &persistRequest{roomID: roomID, events: events, done: make(chan persistResult, 1)}
	return db.groupCommit(req)
}

// PersistGraphEvent implements store.Graph through the group committer:
// events received from other servers share commits as local ones do.
func (db *DB) PersistGraphEvent(ctx context.Context, w *store.GraphWrite) (pos, group int64, err error) {
	req := &persistRequest{done: make(chan persistResult, 1), fn: func(ctx context.Context, tx *Tx) error {
		var err error
		pos, group, err = db.Shared.PersistGraphEventTx(ctx, sharedQuerier[*Tx]{tx}, w)
		return err
	}}
	if _, err := db.groupCommit(req); err != nil {
		return 0, 0, err
	}
	return pos, group, nil
}

// PersistGraphEvents implements store.Graph through the group committer:
// the events of one call share one savepoint (all or nothing) and the
// commit of whatever else is queued.
func (db *DB) PersistGraphEvents(ctx context.Context, ws []*store.GraphWrite) (pos, groups []int64, err error) {
	req := &persistRequest{done: make(chan persistResult, 1), fn: func(ctx context.Context, tx *Tx) error {
		var err error
		pos, groups, err = db.Shared.PersistGraphEventsTx(ctx, sharedQuerier[*Tx]{tx}, ws)
		return err
	}}
	if _, err := db.groupCommit(req); err != nil {
		return nil, nil, err
	}
	return pos, groups, nil
}

// FedTxnRecord implements store.FedTxns through the group committer: the
// answer to a received transaction shares a commit with whatever else is
// queued (the next transaction's events, local sends).
func (db *DB) FedTxnRecord(ctx context.Context, origin, txnID string, answer []byte, nowMS int64) error {
	req := &persistRequest{done: make(chan persistResult, 1), fn: func(ctx context.Context, tx *Tx) error {
		return sqlstore.FedTxnRecordTx(ctx, sharedQuerier[*Tx]{tx}, origin, txnID, answer, nowMS)
	}}
	_, err := db.groupCommit(req)
	return err
}

func (db *DB) groupCommit(req *persistRequest) ([]int64, error) {
	c := db.commit
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return nil, errClosed
	}
	c.queue <- req
	c.mu.RUnlock()
	// The result is awaited even if ctx ends: the write may already be in
	// a committing transaction, and the room service must know its outcome.
	res := <-req.done
	return res.positions, res.err
}

func (db *DB) commitLoop() {
	defer close(db.commit.done)
	for first := range db.commit.queue {
		batch := []*persistRequest{first}
	drain:
		for len(batch) < maxGroup {
			select {
			case r, ok := <-db.commit.queue:
				if !ok {
					break drain
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		db.commitBatch(batch)
	}
}

func (db *DB) commitBatch(batch []*persistRequest) {
	results := make([]persistResult, len(batch))
	// The transaction belongs to no single caller, so no caller's context
	// may abort it.
	ctx := context.Background()
	err := db.tx(ctx, func(tx *Tx) error {
		for i, r := range batch {
			if _, err := tx.ExecContext(ctx, `SAVEPOINT persist`); err != nil {
				return err
			}
			var pos []int64
			var err error
			if r.fn != nil {
				err = r.fn(ctx, tx)
			} else {
				pos, err = persistEventsTx(ctx, db.Shared, tx, r.roomID, r.events)
			}
			if err != nil {
				if _, rbErr := tx.ExecContext(ctx, `ROLLBACK TO persist`); rbErr != nil {
					return rbErr
				}
				results[i] = persistResult{err: err}
			} else {
				results[i] = persistResult{positions: pos}
			}
			if _, err := tx.ExecContext(ctx, `RELEASE persist`); err != nil {
				return err
			}
		}
		return nil
	})
	// Observed before anyone is answered: whoever reads the metrics after
	// a write returned sees its transaction counted.
	if f := db.commit.observe.Load(); f != nil {
		(*f)(len(batch))
	}
	for i, r := range batch {
		if err != nil {
			results[i] = persistResult{err: err}
		}
		r.done <- results[i]
	}
}
