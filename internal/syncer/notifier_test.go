package syncer

import "testing"

// Woken counts the waiters signalled, not the Wake calls: waking nobody or
// a waiter already signalled counts nothing.
func TestNotifierWoken(t *testing.T) {
	n := NewNotifier()
	n.Wake("@nobody:x")
	a, doneA := n.register("@a:x")
	_, doneB := n.register("@b:x")
	defer doneB()
	if n.Waiting() != 2 || n.Woken() != 0 {
		t.Fatalf("waiting %d woken %d", n.Waiting(), n.Woken())
	}
	n.Wake("@a:x", "@b:x")
	n.Wake("@a:x") // a's signal is still pending: not counted again
	if n.Woken() != 2 {
		t.Fatalf("woken %d, want 2", n.Woken())
	}
	<-a.ch
	n.Wake("@a:x")
	doneA()
	n.Wake("@a:x")
	if n.Woken() != 3 || n.Waiting() != 1 {
		t.Fatalf("woken %d waiting %d, want 3 and 1", n.Woken(), n.Waiting())
	}
}
