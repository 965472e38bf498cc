// Package ratelimit is a keyed token-bucket limiter with bounded memory:
// each key (a client IP, an account) has a bucket that refills at a steady
// rate up to a burst. Buckets that have refilled completely carry no
// information and are dropped, so idle keys cost nothing.
package ratelimit

import (
	"sync"
	"time"
)

// Limiter limits events per key. The zero value is not usable; call New.
type Limiter struct {
	rate    float64 // tokens per second
	burst   float64
	maxKeys int
	now     func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// New returns a limiter allowing rate events per second per key with the
// given burst, tracking at most maxKeys keys at once (<= 0: 100000).
func New(rate float64, burst int, maxKeys int) *Limiter {
	if maxKeys <= 0 {
		maxKeys = 100000
	}
	if burst < 1 {
		burst = 1
	}
	return &Limiter{rate: rate, burst: float64(burst), maxKeys: maxKeys, now: time.Now, buckets: map[string]*bucket{}}
}

// SetClock replaces the time source (tests).
func (l *Limiter) SetClock(now func() time.Time) { l.now = now }

// Allow takes one token from key's bucket. When none is left it returns
// false and how long until one will be.
func (l *Limiter) Allow(key string) (bool, time.Duration) { return l.take(key, true) }

// Check reports whether Allow would succeed, without taking a token.
func (l *Limiter) Check(key string) (bool, time.Duration) { return l.take(key, false) }

func (l *Limiter) take(key string, consume bool) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if !consume {
			return true, 0
		}
		if len(l.buckets) >= l.maxKeys {
			l.evict(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	l.refill(b, now)
	if b.tokens >= 1 {
		if consume {
			b.tokens--
		}
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	if wait < time.Millisecond {
		wait = time.Millisecond
	}
	return false, wait
}

func (l *Limiter) refill(b *bucket, now time.Time) {
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens += el * l.rate
		if b.tokens > l.burst {
			b.tokens = l.burst
		}
	}
	b.last = now
}

// evict drops the buckets that have refilled (they behave exactly like a
// new bucket); if the map is still full, it drops arbitrary buckets until a
// tenth of the room is free. Dropping a bucket forgives its key, which is
// the price of bounded memory under a flood of distinct keys.
func (l *Limiter) evict(now time.Time) {
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, k)
		}
	}
	target := l.maxKeys - l.maxKeys/10 - 1
	for k := range l.buckets {
		if len(l.buckets) <= target {
			break
		}
		delete(l.buckets, k)
	}
}

// Len is the number of tracked keys.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
