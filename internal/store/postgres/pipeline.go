package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"conclave/internal/changes"
)

// pipeline is a write sent in one round trip: its statements go out together
// (pgx.Batch) and, with no BEGIN among them, PostgreSQL runs them as one
// implicit transaction that commits at the batch's Sync. If a statement
// fails, the ones after it are skipped and everything is rolled back. A
// pipeline that allocates stream positions (allocPos) holds the stream row
// lock only while the server executes the statements after the allocation
// and commits: no client round trip happens inside it.
type pipeline struct {
	b     pgx.Batch
	steps []pipelineStep
}

type pipelineStep struct {
	scan   func(pgx.Row) error // nil: an Exec
	mapErr func(error) error   // maps this statement's error; nil keeps it
}

// exec queues a statement whose result is ignored.
func (p *pipeline) exec(mapErr func(error) error, sql string, args ...any) {
	p.b.Queue(sql, args...)
	p.steps = append(p.steps, pipelineStep{mapErr: mapErr})
}

// queryRow queues a statement returning one row, scanned by scan.
func (p *pipeline) queryRow(scan func(pgx.Row) error, sql string, args ...any) {
	p.b.Queue(sql, args...)
	p.steps = append(p.steps, pipelineStep{scan: scan})
}

// allocPos queues the allocation of n stream positions; *first receives the
// first of them once the pipeline has run. The statements queued after it
// find the allocation's last position with lastPosSQL (the transaction sees
// its own update of the stream row, which nobody else can change before it
// ends).
func (p *pipeline) allocPos(ctx context.Context, n int, first *int64) {
	p.exec(nil, setMarksSQL, changes.Payload(ctx))
	p.queryRow(func(r pgx.Row) error {
		var last int64
		if err := r.Scan(&last); err != nil {
			return err
		}
		*first = last - int64(n) + 1
		return nil
	}, `UPDATE stream SET pos = pos + $1 WHERE id = 1 RETURNING pos`, n)
}

// setMarksSQL hands the change tracker's keys of the write to the stream
// row's trigger (migration 0012), which sends them with the allocation's
// notification; queue it before every allocation, in the same transaction.
const setMarksSQL = `SELECT set_config('conclave.marks', $1, true)`

// lastPosSQL is the last position allocated by allocPos in this pipeline;
// statements use `lastPosSQL - $k` for the position k before it.
const lastPosSQL = `(SELECT pos FROM stream WHERE id = 1)`

// run sends the pipeline and reads every result in order. The first failing
// statement's error (mapped) is returned; the transaction then rolled back.
// A deadlock or serialisation failure retries the whole pipeline, as db.tx
// does; the scan functions must tolerate running again.
//
// The pipeline runs to its end even if ctx ends: its commit comes with its
// last result, so a pipeline cut short by the caller's context could have
// committed and still be reported failed (see txOnce).
func (db *DB) run(ctx context.Context, p *pipeline) error {
	ctx = context.WithoutCancel(ctx)
	for attempt := 1; ; attempt++ {
		err := db.runOnce(ctx, p)
		if err == nil || attempt == maxTxAttempts || !retryable(err) || ctx.Err() != nil {
			return err
		}
	}
}

func (db *DB) runOnce(ctx context.Context, p *pipeline) error {
	// A batch must only be sent once: send a copy.
	b := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, len(p.b.QueuedQueries))}
	for i, q := range p.b.QueuedQueries {
		b.QueuedQueries[i] = &pgx.QueuedQuery{SQL: q.SQL, Arguments: q.Arguments}
	}
	br := db.pool.SendBatch(ctx, b)
	var failed error
	for _, st := range p.steps {
		var err error
		if st.scan != nil {
			err = st.scan(br.QueryRow())
		} else {
			_, err = br.Exec()
		}
		if err != nil {
			if st.mapErr != nil && !retryable(err) {
				err = st.mapErr(err)
			}
			failed = err
			break
		}
	}
	cerr := br.Close()
	if failed != nil {
		return failed
	}
	return cerr
}
