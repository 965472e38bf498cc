package fedsender

import (
	"context"
	"sync"

	"conclave/internal/store"
)

// enqueuer commits Enqueue calls in groups: calls that arrive while a
// commit is in flight share the next transaction (one fsync on SQLite, one
// commit on PostgreSQL for many rooms' events), and each caller returns once
// the transaction holding its items committed. The first caller to find no
// commit in flight commits the group; if more calls arrived meanwhile, a
// goroutine commits them, so no caller waits for more than two commits.
type enqueuer struct {
	s *Sender

	mu       sync.Mutex
	next     *enqGroup // collecting
	inFlight bool
}

type enqGroup struct {
	items []store.FedEnqueue
	done  chan struct{}
	err   error
}

func (q *enqueuer) add(ctx context.Context, it store.FedEnqueue) error {
	q.mu.Lock()
	if q.next == nil {
		q.next = &enqGroup{done: make(chan struct{})}
	}
	g := q.next
	g.items = append(g.items, it)
	lead := !q.inFlight
	if lead {
		q.inFlight = true
		q.next = nil
	}
	q.mu.Unlock()
	if lead {
		q.commit(g)
		q.mu.Lock()
		more := q.next
		if more == nil {
			q.inFlight = false
		} else {
			q.next = nil
		}
		q.mu.Unlock()
		if more != nil {
			go q.drain(more)
		}
	}
	// Awaited even if ctx ends: the items may be committing, and the
	// caller must know whether they were.
	<-g.done
	return g.err
}

// drain commits g and every group that gathered meanwhile.
func (q *enqueuer) drain(g *enqGroup) {
	for g != nil {
		q.commit(g)
		q.mu.Lock()
		g = q.next
		q.next = nil
		if g == nil {
			q.inFlight = false
		}
		q.mu.Unlock()
	}
}

func (q *enqueuer) commit(g *enqGroup) {
	// The transaction belongs to every caller in the group: none of their
	// contexts may abort it.
	g.err = q.s.st.FedEnqueue(context.Background(), g.items)
	close(g.done)
}
