package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"conclave/internal/store/postgres"
	"conclave/internal/store/storetest"
	"conclave/internal/store/storetest/pgtest"
)

// TestUpgradeToStateGroups: a database written before migration 0013 (state
// groups) keeps the state after each of its events and goes on correctly.
// The old schema is made by undoing 0013 and 0016 on a fresh database.
func TestUpgradeToStateGroups(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	db, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	check := storetest.LinearHistory(t, db, "!old:x")
	db.Close()

	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `DROP TABLE state_groups; DROP TABLE state_group_entries;
		ALTER TABLE events DROP COLUMN state_group; ALTER TABLE rooms DROP COLUMN state_group;
		ALTER TABLE events DROP COLUMN kind, DROP COLUMN rejected_reason, DROP COLUMN current_group; DROP SEQUENCE events_apart_pos;
		DELETE FROM schema_migrations WHERE version IN (13, 16)`); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)

	db, err = postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	check(t, db)
}
