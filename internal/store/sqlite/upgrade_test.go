package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"conclave/internal/store/sqlite"
	"conclave/internal/store/storetest"
)

// TestUpgradeToStateGroups: a database written before migration 0013 (state
// groups) keeps the state after each of its events and goes on correctly.
// The old schema is made by undoing 0013 and 0016 on a fresh database.
func TestUpgradeToStateGroups(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "conclave.db")
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	check := storetest.LinearHistory(t, db, "!old:x")
	db.Close()

	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`DROP TABLE state_groups`, `DROP TABLE state_group_entries`,
		`ALTER TABLE events DROP COLUMN state_group`, `ALTER TABLE rooms DROP COLUMN state_group`,
		`ALTER TABLE events DROP COLUMN kind`, `ALTER TABLE events DROP COLUMN rejected_reason`, `ALTER TABLE events DROP COLUMN current_group`,
		`DELETE FROM schema_migrations WHERE version IN (13, 16)`,
	} {
		if _, err := raw.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	raw.Close()

	db, err = sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	check(t, db)
}
