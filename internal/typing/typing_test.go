package typing

import (
	"context"
	"errors"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"conclave/internal/matrix"
)

// fakeClock fires timers only when Advance moves past them.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at      time.Time
	f       func()
	stopped bool
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		was := !t.stopped
		t.stopped = true
		return was
	}
}

// Advance moves time forward, running due timers in order.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		sort.Slice(c.timers, func(i, j int) bool { return c.timers[i].at.Before(c.timers[j].at) })
		var due *fakeTimer
		for i, t := range c.timers {
			if !t.stopped && !t.at.After(end) {
				due = t
				c.timers = append(c.timers[:i], c.timers[i+1:]...)
				break
			}
		}
		if due == nil {
			c.now = end
			c.mu.Unlock()
			return
		}
		c.now = due.at
		due.stopped = true
		c.mu.Unlock()
		due.f()
	}
}

func (c *fakeClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if !t.stopped {
			n++
		}
	}
	return n
}

func newTest() (*Service, *fakeClock, *[]string) {
	clk := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	s := NewWithClock(clk)
	s.IsJoined = func(_ context.Context, roomID, userID string) (bool, error) {
		if userID == "@err:x" {
			return false, errors.New("boom")
		}
		return userID != "@out:x", nil
	}
	var notified []string
	s.Notify = func(roomID string) { notified = append(notified, roomID) }
	return s, clk, &notified
}

func TestTypingExpiry(t *testing.T) {
	s, clk, notified := newTest()
	ctx := context.Background()
	start := s.Serial()
	if err := s.Set(ctx, "!r:x", "@a:x", true, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "!r:x", "@b:x", true, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	got, serial := s.Since([]string{"!r:x", "!other:x"}, start)
	if !reflect.DeepEqual(got, map[string][]string{"!r:x": {"@a:x", "@b:x"}}) || serial != start+2 {
		t.Fatalf("since: %v %d", got, serial)
	}
	if len(*notified) != 2 {
		t.Fatalf("notified: %v", *notified)
	}
	// Renewal changes nothing visible: no notification, no new serial.
	s.Set(ctx, "!r:x", "@a:x", true, 10*time.Second)
	if len(*notified) != 2 || s.Serial() != serial {
		t.Fatal("renewal notified")
	}
	clk.Advance(9 * time.Second)
	if len(s.Typing("!r:x")) != 2 {
		t.Fatal("expired early")
	}
	clk.Advance(time.Second)
	if users := s.Typing("!r:x"); !reflect.DeepEqual(users, []string{"@b:x"}) {
		t.Fatalf("after a's expiry: %v", users)
	}
	if len(*notified) != 3 {
		t.Fatalf("expiry not notified: %v", *notified)
	}
	got, serial2 := s.Since([]string{"!r:x"}, serial)
	if !reflect.DeepEqual(got, map[string][]string{"!r:x": {"@b:x"}}) || serial2 <= serial {
		t.Fatalf("since after expiry: %v", got)
	}
	clk.Advance(20 * time.Second)
	got, serial3 := s.Since([]string{"!r:x"}, serial2)
	if users, ok := got["!r:x"]; !ok || len(users) != 0 {
		t.Fatalf("the empty set must be reported: %v", got)
	}
	if got, _ := s.Since([]string{"!r:x"}, serial3); len(got) != 0 {
		t.Fatalf("nothing changed: %v", got)
	}
	// Initial sync leaves out rooms where nobody types.
	if got, _ := s.Since([]string{"!r:x"}, 0); len(got) != 0 {
		t.Fatalf("initial: %v", got)
	}
	if clk.pending() != 0 {
		t.Fatalf("timers left: %d", clk.pending())
	}
}

func TestTypingStopAndCap(t *testing.T) {
	s, clk, notified := newTest()
	ctx := context.Background()
	s.Set(ctx, "!r:x", "@a:x", true, time.Hour) // capped at MaxTimeout
	s.Set(ctx, "!r:x", "@a:x", false, 0)
	s.Set(ctx, "!r:x", "@a:x", false, 0) // not typing: no change
	if len(*notified) != 2 || len(s.Typing("!r:x")) != 0 {
		t.Fatalf("stop: %v", *notified)
	}
	s.Set(ctx, "!r:x", "@a:x", true, time.Hour)
	clk.Advance(MaxTimeout - time.Millisecond)
	if len(s.Typing("!r:x")) != 1 {
		t.Fatal("expired before the cap")
	}
	clk.Advance(time.Millisecond)
	if len(s.Typing("!r:x")) != 0 {
		t.Fatal("timeout not capped")
	}
	s.Set(ctx, "!r:x", "@a:x", true, 0) // default timeout
	clk.Advance(DefaultTimeout)
	if len(s.Typing("!r:x")) != 0 {
		t.Fatal("default timeout")
	}
	// A serial from the future (another process) gets the full picture.
	s.Set(ctx, "!r:x", "@a:x", true, 0)
	if got, _ := s.Since([]string{"!r:x"}, s.Serial()+100); len(got["!r:x"]) != 1 {
		t.Fatalf("future serial: %v", got)
	}
}

func TestTypingErrors(t *testing.T) {
	s, _, _ := newTest()
	ctx := context.Background()
	check := func(err error, code string) {
		t.Helper()
		me, ok := matrix.AsError(err)
		if !ok || me.Code != code {
			t.Fatalf("got %v, want %s", err, code)
		}
	}
	check(s.Set(ctx, "bad", "@a:x", true, 0), matrix.ErrInvalidParam)
	check(s.Set(ctx, "!r:x", "@out:x", true, 0), matrix.ErrForbidden)
	if err := s.Set(ctx, "!r:x", "@err:x", true, 0); err == nil || err.Error() != "boom" {
		t.Fatalf("hook error: %v", err)
	}
	s.IsJoined = nil
	check(s.Set(ctx, "!r:x", "@a:x", true, 0), matrix.ErrForbidden)
	if c := EventContent(nil); c["user_ids"] == nil {
		t.Fatal("user_ids must be a list")
	}
}

func TestSerialSurvivesRestart(t *testing.T) {
	s1, _, _ := newTest()
	s1.Set(context.Background(), "!r:x", "@a:x", true, 0)
	old := s1.Serial()
	clk := &fakeClock{now: time.Unix(1_700_000_100, 0)}
	s2 := NewWithClock(clk)
	if s2.Serial() <= old {
		t.Fatal("serial went backwards across a restart")
	}
}

// A room nobody typed in for a while is forgotten; a token from before its
// last change still learns that nobody types there.
func TestIdleRoomsAreForgotten(t *testing.T) {
	s, clk, _ := newTest()
	ctx := context.Background()
	s.Set(ctx, "!r:x", "@a:x", true, 10*time.Second)
	old := s.Serial()
	s.Set(ctx, "!r:x", "@a:x", false, 0)
	recent := s.Serial()
	clk.Advance(pruneAfter + pruneEvery)
	s.Set(ctx, "!other:x", "@a:x", true, 10*time.Second) // something happens: rooms are looked at
	s.mu.Lock()
	_, kept := s.rooms["!r:x"]
	s.mu.Unlock()
	if kept {
		t.Fatal("idle room still kept")
	}
	if got, _ := s.Since([]string{"!r:x"}, old); !reflect.DeepEqual(got, map[string][]string{"!r:x": {}}) {
		t.Fatalf("a token from while a typed: %v", got)
	}
	if got, _ := s.Since([]string{"!r:x"}, recent); len(got) != 0 {
		t.Fatalf("a token from after the stop: %v", got)
	}
}
