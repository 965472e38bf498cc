package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"conclave/internal/store/postgres"
	"conclave/internal/store/storetest/pgtest"
)

// Two processes (two stores on one database): one sender per destination;
// the lock passes on when its holder unlocks, closes or loses its session,
// and a holder whose session is killed is told.
func TestFedLocker(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	open := func() *postgres.DB {
		db, err := postgres.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	p1, p2 := open(), open()
	try := func(db *postgres.DB, dest string, want bool) (func(), <-chan struct{}) {
		t.Helper()
		unlock, lost, ok, err := db.TryLockDestination(ctx, dest)
		if err != nil {
			t.Fatal(err)
		}
		if ok != want {
			t.Fatalf("lock %s: %v, want %v", dest, ok, want)
		}
		return unlock, lost
	}
	u1, _ := try(p1, "a.test", true)
	try(p2, "a.test", false)
	u2b, _ := try(p2, "b.test", true) // other destinations are free
	u1()
	u1() // twice is harmless
	u2, _ := try(p2, "a.test", true)
	try(p1, "a.test", false)
	u2()
	u2b()

	// A process that dies releases its destinations.
	p3 := open()
	try(p3, "c.test", true)
	p3.Close()
	u, _ := try(p1, "c.test", true)
	u()

	// A session killed under a holder: it is told, and another takes over.
	_, lost := try(p2, "d.test", true)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lost:
	case <-time.After(30 * time.Second):
		t.Fatal("the holder of a killed session was not told")
	}
	// The killed backend goes a moment after it was signalled.
	for deadline := time.Now().Add(10 * time.Second); ; {
		unlock, _, ok, err := p1.TryLockDestination(ctx, "d.test")
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			unlock()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the lock of a killed session is still held")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The next lock opens a new session.
	u, _ = try(p2, "e.test", true)
	u()
}
