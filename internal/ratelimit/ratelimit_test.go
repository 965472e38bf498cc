package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func newTest(rate float64, burst, max int) (*Limiter, *clock) {
	c := &clock{t: time.Unix(1000, 0)}
	l := New(rate, burst, max)
	l.SetClock(c.now)
	return l, c
}

func TestBurstThenRefill(t *testing.T) {
	l, c := newTest(0.5, 3, 0)
	for i := 0; i < 3; i++ {
		if ok, _ := l.Allow("a"); !ok {
			t.Fatalf("attempt %d refused within burst", i)
		}
	}
	ok, wait := l.Allow("a")
	if ok || wait != 2*time.Second {
		t.Fatalf("fourth attempt: ok=%v wait=%v, want refused for 2s", ok, wait)
	}
	if ok, _ := l.Allow("b"); !ok {
		t.Fatal("other key limited")
	}
	c.add(time.Second)
	if ok, wait := l.Check("a"); ok || wait != time.Second {
		t.Fatalf("after 1s: ok=%v wait=%v", ok, wait)
	}
	c.add(time.Second)
	if ok, _ := l.Check("a"); !ok {
		t.Fatal("check after refill refused")
	}
	if ok, _ := l.Allow("a"); !ok {
		t.Fatal("allow after refill refused")
	}
	if ok, _ := l.Allow("a"); ok {
		t.Fatal("only one token should have refilled")
	}
}

func TestCheckDoesNotConsumeOrTrack(t *testing.T) {
	l, _ := newTest(1, 1, 0)
	for i := 0; i < 5; i++ {
		if ok, _ := l.Check("x"); !ok {
			t.Fatal("check refused")
		}
	}
	if l.Len() != 0 {
		t.Fatalf("check created a bucket")
	}
	if ok, _ := l.Allow("x"); !ok {
		t.Fatal("allow refused")
	}
}

func TestBoundedMemory(t *testing.T) {
	l, c := newTest(1, 2, 100)
	for i := 0; i < 1000; i++ {
		l.Allow(fmt.Sprint("k", i))
		if l.Len() > 100 {
			t.Fatalf("tracking %d keys, limit 100", l.Len())
		}
	}
	// Idle buckets are dropped first: after they refill, eviction keeps the
	// one that is still limited.
	l2, c2 := newTest(1, 2, 10)
	_ = c
	l2.Allow("hot")
	l2.Allow("hot")
	for i := 0; i < 9; i++ {
		l2.Allow(fmt.Sprint("idle", i))
	}
	c2.add(1500 * time.Millisecond) // idle buckets (1 token left) are full again; "hot" has 1.5
	l2.Allow("new")
	if _, ok := l2.buckets["hot"]; !ok {
		t.Fatal("a bucket still limiting was evicted before idle ones")
	}
	if l2.Len() != 2 {
		t.Fatalf("idle buckets not evicted: %d keys", l2.Len())
	}
}

func BenchmarkAllow(b *testing.B) {
	l := New(1000, 1000, 0)
	for i := 0; i < b.N; i++ {
		l.Allow("1.2.3.4")
	}
}
