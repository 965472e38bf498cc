package syncer

import (
	"sync"
	"sync/atomic"
)

// Notifier wakes the long-polling /sync requests of exactly the users a
// change concerns. Waiters register before they look for news, so a change
// committed while a request is assembling its (empty) answer still wakes it.
type Notifier struct {
	mu      sync.Mutex
	waiters map[string]map[*waiter]struct{}
	closed  chan struct{}
	once    sync.Once
	woken   atomic.Uint64 // waiters signalled, for metrics
}

type waiter struct {
	ch chan struct{}
}

// NewNotifier returns an empty notifier.
func NewNotifier() *Notifier {
	return &Notifier{waiters: make(map[string]map[*waiter]struct{}), closed: make(chan struct{})}
}

// Close makes every pending and future long-poll return at once: the server
// is shutting down and must not wait out the clients' timeouts.
func (n *Notifier) Close() { n.once.Do(func() { close(n.closed) }) }

// Closed is closed once Close has been called.
func (n *Notifier) Closed() <-chan struct{} { return n.closed }

// Wake signals every pending /sync of the given users.
func (n *Notifier) Wake(users ...string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, u := range users {
		for w := range n.waiters[u] {
			select {
			case w.ch <- struct{}{}:
				n.woken.Add(1)
			default:
			}
		}
	}
}

// register adds a waiter for user; the returned func removes it.
func (n *Notifier) register(user string) (*waiter, func()) {
	w := &waiter{ch: make(chan struct{}, 1)}
	n.mu.Lock()
	set := n.waiters[user]
	if set == nil {
		set = make(map[*waiter]struct{})
		n.waiters[user] = set
	}
	set[w] = struct{}{}
	n.mu.Unlock()
	return w, func() {
		n.mu.Lock()
		delete(set, w)
		if len(set) == 0 && n.waiters[user] != nil && len(n.waiters[user]) == 0 {
			delete(n.waiters, user)
		}
		n.mu.Unlock()
	}
}

// Woken is how many waiting requests Wake has signalled so far (metrics).
func (n *Notifier) Woken() uint64 { return n.woken.Load() }

// Waiting reports how many requests are long-polling (for metrics and tests).
func (n *Notifier) Waiting() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, s := range n.waiters {
		c += len(s)
	}
	return c
}

// WakeAll signals every pending /sync: used when this process may have
// missed wake-ups from other processes sharing the database.
func (n *Notifier) WakeAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, set := range n.waiters {
		for w := range set {
			select {
			case w.ch <- struct{}{}:
			default:
			}
		}
	}
}
