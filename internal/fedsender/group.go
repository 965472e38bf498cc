package fedsender

import (
	"context"
	"sync"
)

// grouper commits calls in groups: calls that arrive while a commit is in
// flight share the next transaction (one fsync on SQLite, one commit on
// PostgreSQL), and each caller returns once the transaction holding its
// item committed. The first caller to find no commit in flight commits the
// group; if more calls arrived meanwhile, a goroutine commits them, so no
// caller waits for more than two commits. Enqueue (many rooms' events) and
// the deliveries of many destinations go through one each.
type grouper[T any] struct {
	commitFn func(ctx context.Context, items []T) error

	mu       sync.Mutex
	next     *group[T] // collecting
	inFlight bool
}

type group[T any] struct {
	items []T
	done  chan struct{}
	err   error
}

func (q *grouper[T]) add(item T) error {
	q.mu.Lock()
	if q.next == nil {
		q.next = &group[T]{done: make(chan struct{})}
	}
	g := q.next
	g.items = append(g.items, item)
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
	// Awaited whatever the caller's context: the item may be committing,
	// and the caller must know whether it was.
	<-g.done
	return g.err
}

// drain commits g and every group that gathered meanwhile.
func (q *grouper[T]) drain(g *group[T]) {
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

func (q *grouper[T]) commit(g *group[T]) {
	// The transaction belongs to every caller in the group: none of their
	// contexts may abort it.
	g.err = q.commitFn(context.Background(), g.items)
	close(g.done)
}
