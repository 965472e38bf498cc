package postgres

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"conclave/internal/store/storetest/pgtest"
)

// A caller that goes away after every statement of its transaction ran, as
// the commit is about to be sent: the transaction commits and says so. (pgx
// would give up on a COMMIT under a cancelled context, and cancelled while
// the COMMIT is on its way, answer an error for a write that committed.)
func TestCommitOutlivesItsCaller(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.pool.Exec(ctx, `CREATE TABLE outlive (x int)`); err != nil {
		t.Fatal(err)
	}
	caller, hangUp := context.WithCancel(ctx)
	err = db.tx(caller, func(tx pgx.Tx) error {
		if _, err := tx.Exec(caller, `INSERT INTO outlive VALUES (1)`); err != nil {
			return err
		}
		hangUp()
		return nil
	})
	if err != nil {
		t.Fatalf("a transaction whose statements all ran: %v", err)
	}
	var n int
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM outlive`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("%d rows committed, want 1", n)
	}

	// A statement the caller's context cut short rolls everything back.
	caller, hangUp = context.WithCancel(ctx)
	err = db.tx(caller, func(tx pgx.Tx) error {
		if _, err := tx.Exec(caller, `INSERT INTO outlive VALUES (2)`); err != nil {
			return err
		}
		hangUp()
		_, err := tx.Exec(caller, `INSERT INTO outlive VALUES (3)`)
		return err
	})
	if err == nil {
		t.Fatal("a transaction whose statement was cancelled reported success")
	}
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM outlive`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("%d rows after a cancelled transaction, want 1", n)
	}
}
