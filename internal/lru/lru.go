// Package lru is a bounded map that forgets its least recently used entries:
// the one shape of memory for the caches in front of the store, so that no
// cache grows without limit or "starts over" when full.
package lru

import "sync"

// Cache maps keys to values, holding at most its capacity; safe for
// concurrent use. The zero value is not usable: call New.
type Cache[K comparable, V any] struct {
	mu    sync.Mutex
	max   int
	items map[K]*entry[K, V]
	head  entry[K, V] // sentinel: head.next is the most recently used
}

type entry[K comparable, V any] struct {
	key        K
	val        V
	prev, next *entry[K, V]
}

// New returns a cache holding at most size entries (at least 1).
func New[K comparable, V any](size int) *Cache[K, V] {
	c := &Cache[K, V]{max: max(size, 1), items: make(map[K]*entry[K, V])}
	c.head.next, c.head.prev = &c.head, &c.head
	return c
}

func (c *Cache[K, V]) unlink(e *entry[K, V]) {
	e.prev.next, e.next.prev = e.next, e.prev
}

func (c *Cache[K, V]) pushFront(e *entry[K, V]) {
	e.prev, e.next = &c.head, c.head.next
	c.head.next.prev = e
	c.head.next = e
}

// Get returns the value for k and marks it recently used.
func (c *Cache[K, V]) Get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[k]
	if !ok {
		var zero V
		return zero, false
	}
	c.unlink(e)
	c.pushFront(e)
	return e.val, true
}

// Put sets the value for k, forgetting the least recently used entry when
// the cache is full.
func (c *Cache[K, V]) Put(k K, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putLocked(k, v)
}

func (c *Cache[K, V]) putLocked(k K, v V) {
	if e, ok := c.items[k]; ok {
		e.val = v
		c.unlink(e)
		c.pushFront(e)
		return
	}
	e := &entry[K, V]{key: k, val: v}
	c.items[k] = e
	c.pushFront(e)
	if len(c.items) > c.max {
		old := c.head.prev
		c.unlink(old)
		delete(c.items, old.key)
	}
}

// Update sets the value for k to f(old, ok) atomically; f returning keep
// false removes k instead.
func (c *Cache[K, V]) Update(k K, f func(old V, ok bool) (v V, keep bool)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var old V
	e, ok := c.items[k]
	if ok {
		old = e.val
	}
	v, keep := f(old, ok)
	switch {
	case keep:
		c.putLocked(k, v)
	case ok:
		c.unlink(e)
		delete(c.items, k)
	}
}

// Delete forgets k.
func (c *Cache[K, V]) Delete(k K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		c.unlink(e)
		delete(c.items, k)
	}
}

// Clear forgets every entry.
func (c *Cache[K, V]) Clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.items)
	c.head.next, c.head.prev = &c.head, &c.head
}

// Len is the number of entries.
func (c *Cache[K, V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items)
}
