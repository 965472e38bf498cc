package migrate_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"conclave/internal/migrate"
	"conclave/internal/store/sqlite"
	"conclave/internal/store/storetest/pgtest"
)

// BenchmarkMigrate migrates a SQLite database holding MIGRATE_BENCH_EVENTS
// message events (default 20000) in 100 rooms, written straight into the
// tables, into a fresh PostgreSQL database per iteration:
//
//	CONCLAVE_TEST_DATABASE=postgres go test -run '^$' -bench Migrate -benchtime 1x ./internal/migrate
func BenchmarkMigrate(b *testing.B) {
	if os.Getenv("CONCLAVE_TEST_DATABASE") != "postgres" {
		b.Skip("runs in the PostgreSQL pass (CONCLAVE_TEST_DATABASE=postgres)")
	}
	n := 20000
	if v, err := strconv.Atoi(os.Getenv("MIGRATE_BENCH_EVENTS")); err == nil && v > 0 {
		n = v
	}
	dir := b.TempDir()
	file := filepath.Join(dir, migrate.SQLiteFile)
	db, err := sqlite.Open(context.Background(), file)
	if err != nil {
		b.Fatal(err)
	}
	db.Close()
	raw, err := sql.Open("sqlite", "file:"+file)
	if err != nil {
		b.Fatal(err)
	}
	tx, err := raw.Begin()
	if err != nil {
		b.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		room := fmt.Sprintf("!room%d:localhost", i%100)
		js := fmt.Sprintf(`{"content":{"body":"message number %d about pineapples and other fruit","msgtype":"m.text"},"room_id":%q,"sender":"@u:localhost","type":"m.room.message","origin_server_ts":%d}`, i, room, 1700000000000+i)
		if _, err := tx.Exec(`INSERT INTO events (pos, event_id, room_id, type, sender, depth, origin_server_ts, json) VALUES (?, ?, ?, 'm.room.message', '@u:localhost', ?, ?, ?)`,
			i, fmt.Sprintf("$e%d", i), room, i, 1700000000000+i, []byte(js)); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := tx.Exec(`UPDATE stream SET pos = ?`, n); err != nil {
		b.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	raw.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dsn := pgtest.NewDatabase(b)
		b.StartTimer()
		rep, err := migrate.Run(context.Background(), migrate.Options{From: "sqlite:" + dir, To: dsn})
		if err != nil {
			b.Fatal(err)
		}
		if rep.StreamPos != int64(n) {
			b.Fatalf("stream position %d", rep.StreamPos)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
