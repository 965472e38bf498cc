package migrate_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"conclave/internal/config"
	"conclave/internal/homeserver/hstest"
	"conclave/internal/migrate"
	"conclave/internal/store"
	"conclave/internal/store/postgres"
	"conclave/internal/store/sqlite"
	"conclave/internal/store/storetest/pgtest"
)

// needPostgres skips unless this is the PostgreSQL pass of the suite
// (CONCLAVE_TEST_DATABASE=postgres, see the Makefile), where pgtest gives
// every test its own database.
func needPostgres(t *testing.T) {
	t.Helper()
	if os.Getenv(hstest.EnvDatabase) != "postgres" {
		t.Skipf("runs in the PostgreSQL pass (%s=postgres)", hstest.EnvDatabase)
	}
}

// run calls the command line entry point.
func run(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = migrate.Main(args, &o, &e)
	return code, o.String(), e.String()
}

func TestUsageAndBadArguments(t *testing.T) {
	code, out, _ := run("--help")
	if code != 0 || !strings.Contains(out, "STOP THE SERVER FIRST") || !strings.Contains(out, "--data-dir") {
		t.Fatalf("--help: %d %q", code, out)
	}
	dir := t.TempDir()
	emptyDir := t.TempDir()
	file := filepath.Join(dir, "conclave.db")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	pg := "postgres://u@localhost/db"
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "--from and --to are required"},
		{[]string{"--from", "sqlite:" + dir}, "--from and --to are required"},
		{[]string{"--to", pg}, "--from and --to are required"},
		{[]string{"--from", "sqlite:" + dir, "--to", pg, "extra"}, "--from and --to are required"},
		{[]string{"--bogus"}, "flag provided but not defined"},
		{[]string{"--from", dir, "--to", pg}, "--from must be sqlite:PATH"},
		{[]string{"--from", "sqlite:", "--to", pg}, "--from must be sqlite:PATH"},
		{[]string{"--from", "postgres://x/y", "--to", pg}, "--from must be sqlite:PATH"},
		{[]string{"--from", "sqlite:" + filepath.Join(dir, "nope"), "--to", pg}, "no such file"},
		{[]string{"--from", "sqlite:" + emptyDir, "--to", pg}, "no conclave.db in the directory"},
		{[]string{"--from", "sqlite:" + dir, "--to", "mysql://u@h/db"}, "--to must be a postgres:// URL"},
		{[]string{"--from", "sqlite:" + dir, "--to", "sqlite:" + dir}, "--to must be a postgres:// URL"},
		{[]string{"--from", "sqlite:" + dir, "--to", "postgres://u@h:notaport/db"}, "--to:"},
	} {
		code, _, errOut := run(c.args...)
		if code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", c.args, code, errOut, c.want)
		}
	}
	// A password in --to is not echoed.
	_, _, errOut := run("--from", "sqlite:"+dir, "--to", "mysql://u:secret@h/db")
	if strings.Contains(errOut, "secret") {
		t.Errorf("password echoed: %q", errOut)
	}
	// Both a directory and the file name the same database.
	for _, from := range []string{"sqlite:" + dir, "sqlite:" + file} {
		got, dd, err := migrate.ParseFrom(from)
		if err != nil || got != file || dd != dir {
			t.Errorf("ParseFrom(%q) = %q, %q, %v", from, got, dd, err)
		}
	}
}

// smallSource runs a SQLite server, adds a user with a room and a message,
// and stops it; it returns the server's configuration.
func smallSource(t *testing.T) config.Config {
	t.Helper()
	cfg := hstest.Default(t)
	s := hstest.StartConfig(t, cfg)
	u := s.Register(t, "alice")
	room := s.MustOK(t, "POST", hstest.Path("/createRoom"), u.Token, map[string]any{"name": "Small"}).Str("room_id")
	s.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/t1", room), u.Token, map[string]any{"msgtype": "m.text", "body": "hello"})
	s.Stop()
	return cfg
}

func pgCount(t *testing.T, dsn, table string) int64 {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int64
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func pgExec(t *testing.T, dsn string, stmts ...string) {
	t.Helper()
	ctx := context.Background()
	db, err := postgres.Open(ctx, dsn) // the schema first
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func sqliteExec(t *testing.T, file string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+file)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// TestPlanCoversSchema fails when a migration adds a table or column to one
// backend only (or a column type without a conversion) and decisions.go was
// not told what to do with it: fresh databases of both backends must migrate.
func TestPlanCoversSchema(t *testing.T) {
	needPostgres(t)
	dir := t.TempDir()
	db, err := sqlite.Open(context.Background(), filepath.Join(dir, migrate.SQLiteFile))
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	dsn := pgtest.NewDatabase(t)
	rep, err := migrate.Run(context.Background(), migrate.Options{From: "sqlite:" + dir, To: dsn})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for _, tr := range rep.Tables {
		seen[tr.Name] = tr.Action
	}
	for name, want := range map[string]string{"users": "copied", "events": "copied", "stream": "copied", "one_time_keys": "copied",
		"event_search": "rebuilt", "schema_migrations": "skipped"} {
		if seen[name] != want {
			t.Errorf("table %s: %q, want %q", name, seen[name], want)
		}
	}
	for name := range seen {
		if strings.HasPrefix(name, "event_search_") || strings.HasPrefix(name, "sqlite_") {
			t.Errorf("internal table %s in the plan", name)
		}
	}
}

func TestRefusals(t *testing.T) {
	needPostgres(t)
	cfg := smallSource(t)
	from := "sqlite:" + cfg.DataDir

	t.Run("non-empty target", func(t *testing.T) {
		dsn := pgtest.NewDatabase(t)
		if code, _, errOut := run("--from", from, "--to", dsn); code != 0 {
			t.Fatalf("first migration: %d %s", code, errOut)
		}
		code, _, errOut := run("--from", from, "--to", dsn)
		if code != 1 || errOut != "conclave migrate: the target database is not empty (table users has rows): migrate copies into a new, empty database only\n" {
			t.Fatalf("second migration: %d %q", code, errOut)
		}
	})

	t.Run("a signing key already in the target", func(t *testing.T) {
		// Several processes on one PostgreSQL database keep the signing key
		// in it (migration 0010 on main); the first start must import the
		// data directory's key, so a target holding one is not empty.
		dsn := pgtest.NewDatabase(t)
		pgExec(t, dsn)
		var exists bool
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if err := conn.QueryRow(ctx, `SELECT to_regclass('server_signing_key') IS NOT NULL`).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		if !exists {
			t.Skip("no server_signing_key table in this schema")
		}
		if _, err := conn.Exec(ctx, `INSERT INTO server_signing_key (id, key) VALUES (1, 'ed25519 a_xyz AAAA')`); err != nil {
			t.Fatal(err)
		}
		code, _, errOut := run("--from", from, "--to", dsn)
		if code != 1 || !strings.Contains(errOut, "not empty (table server_signing_key has rows)") {
			t.Fatalf("%d %q", code, errOut)
		}
	})

	t.Run("unreachable target", func(t *testing.T) {
		code, _, errOut := run("--from", from, "--to", "postgres://nobody@127.0.0.1:1/none?connect_timeout=5")
		if code != 1 || !strings.Contains(errOut, "target") {
			t.Fatalf("%d %q", code, errOut)
		}
	})

	t.Run("not a SQLite database", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "x.db")
		os.WriteFile(file, bytes.Repeat([]byte("not a database "), 100), 0o600)
		code, _, errOut := run("--from", "sqlite:"+file, "--to", pgtest.NewDatabase(t))
		if code != 1 || !strings.Contains(errOut, "source") {
			t.Fatalf("%d %q", code, errOut)
		}
	})

	t.Run("table only in SQLite", func(t *testing.T) {
		src := copySource(t, cfg)
		sqliteExec(t, src, `CREATE TABLE gadgets (id INTEGER PRIMARY KEY, name TEXT)`, `INSERT INTO gadgets VALUES (1, 'x')`)
		dsn := pgtest.NewDatabase(t)
		code, _, errOut := run("--from", "sqlite:"+src, "--to", dsn)
		if code != 1 || !strings.Contains(errOut, "table gadgets exists only in SQLite: decide in internal/migrate/decisions.go") {
			t.Fatalf("%d %q", code, errOut)
		}
		if n := pgCount(t, dsn, "users"); n != 0 {
			t.Fatalf("%d users written", n)
		}
	})

	t.Run("table and column only in PostgreSQL", func(t *testing.T) {
		dsn := pgtest.NewDatabase(t)
		pgExec(t, dsn, `CREATE TABLE widgets (id BIGINT PRIMARY KEY)`, `ALTER TABLE rooms ADD COLUMN colour TEXT`)
		code, _, errOut := run("--from", from, "--to", dsn)
		if code != 1 || !strings.Contains(errOut, "table widgets exists only in PostgreSQL") || !strings.Contains(errOut, "column rooms.colour exists only in PostgreSQL") {
			t.Fatalf("%d %q", code, errOut)
		}
	})

	t.Run("column type without a conversion", func(t *testing.T) {
		src := copySource(t, cfg)
		sqliteExec(t, src, `CREATE TABLE spans (id INTEGER PRIMARY KEY, during TEXT)`)
		dsn := pgtest.NewDatabase(t)
		pgExec(t, dsn, `CREATE TABLE spans (id BIGINT PRIMARY KEY, during TSRANGE)`)
		code, _, errOut := run("--from", "sqlite:"+src, "--to", dsn)
		if code != 1 || !strings.Contains(errOut, `column spans.during: no conversion from SQLite "TEXT" to PostgreSQL "tsrange"`) {
			t.Fatalf("%d %q", code, errOut)
		}
	})

	t.Run("count mismatch rolls everything back", func(t *testing.T) {
		// A trigger on events (whose triggers stay on for the search index)
		// that also writes a copied table: the counts then differ.
		dsn := pgtest.NewDatabase(t)
		pgExec(t, dsn, `CREATE FUNCTION extra_alias() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN INSERT INTO room_aliases (alias, room_id, creator) VALUES ('#' || NEW.pos || ':x', NEW.room_id, 'x') ON CONFLICT DO NOTHING; RETURN NULL; END $$`,
			`CREATE TRIGGER extra_alias AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION extra_alias()`)
		code, out, errOut := run("--from", from, "--to", dsn)
		if code != 1 || !strings.Contains(errOut, "row counts differ after the copy: room_aliases (SQLite 0, PostgreSQL ") || !strings.Contains(errOut, "nothing was committed") {
			t.Fatalf("%d %q", code, errOut)
		}
		if !strings.Contains(out, "MISMATCH") {
			t.Errorf("summary does not show the mismatch:\n%s", out)
		}
		for _, table := range []string{"users", "events", "room_aliases", "event_search"} {
			if n := pgCount(t, dsn, table); n != 0 {
				t.Errorf("%d rows left in %s", n, table)
			}
		}
		var rep *migrate.Report
		rep, err := migrate.Run(context.Background(), migrate.Options{From: from, To: dsn})
		if !errors.Is(err, migrate.ErrMismatch) || rep == nil {
			t.Fatalf("Run: %v", err)
		}
	})

	t.Run("a value that does not convert rolls everything back", func(t *testing.T) {
		src := copySource(t, cfg)
		sqliteExec(t, src, `UPDATE users SET is_admin = 5`)
		dsn := pgtest.NewDatabase(t)
		code, _, errOut := run("--from", "sqlite:"+src, "--to", dsn)
		if code != 1 || !strings.Contains(errOut, `copy table users: row 1, column is_admin: value "5" (int64) cannot become boolean`) {
			t.Fatalf("%d %q", code, errOut)
		}
		for _, table := range []string{"users", "events", "devices", "access_tokens"} {
			if n := pgCount(t, dsn, table); n != 0 {
				t.Errorf("%d rows left in %s", n, table)
			}
		}
	})

	t.Run("source at a migration the target lacks", func(t *testing.T) {
		src := copySource(t, cfg)
		sqliteExec(t, src, `INSERT INTO schema_migrations VALUES (9999, '9999_future.sql', 0)`)
		code, _, errOut := run("--from", "sqlite:"+src, "--to", pgtest.NewDatabase(t))
		if code != 1 || !strings.Contains(errOut, "has migration 9999") {
			t.Fatalf("%d %q", code, errOut)
		}
	})
}

// copySource copies a stopped server's database file to a new directory.
func copySource(t *testing.T, cfg config.Config) string {
	t.Helper()
	data, err := os.ReadFile(cfg.SQLitePath())
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), migrate.SQLiteFile)
	if err := os.WriteFile(dst, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return dst
}

// A table a future migration adds to both backends is copied with no change
// to this package, with each value converted to its PostgreSQL type, and its
// identity column continues after the copied values.
func TestNewTableOnBothSides(t *testing.T) {
	needPostgres(t)
	cfg := smallSource(t)
	src := copySource(t, cfg)
	sqliteExec(t, src,
		`CREATE TABLE signing_keys (seq INTEGER PRIMARY KEY AUTOINCREMENT, key_id TEXT NOT NULL, active INTEGER NOT NULL, seed BLOB NOT NULL, meta TEXT, weight REAL)`,
		`INSERT INTO signing_keys (key_id, active, seed, meta, weight) VALUES ('ed25519:a', 1, x'00ff10', '{"b":[1,2]}', 1.5), ('ed25519:b', 0, x'', NULL, 2)`,
		`INSERT INTO signing_keys (key_id, active, seed) VALUES ('ed25519:gone', 0, x'01')`,
		`DELETE FROM signing_keys WHERE key_id = 'ed25519:gone'`)
	dsn := pgtest.NewDatabase(t)
	pgExec(t, dsn, `CREATE TABLE signing_keys (seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, key_id TEXT NOT NULL, active BOOLEAN NOT NULL, seed BYTEA NOT NULL, meta JSONB, weight DOUBLE PRECISION)`)
	code, out, errOut := run("--from", "sqlite:"+src, "--to", dsn)
	if code != 0 {
		t.Fatalf("%d %s %s", code, out, errOut)
	}
	if !regexp.MustCompile(`(?m)^signing_keys +2 +2 +copied$`).MatchString(out) {
		t.Errorf("summary:\n%s", out)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var active bool
	var seed []byte
	var meta string
	var weight float64
	if err := conn.QueryRow(ctx, `SELECT active, seed, meta->'b'->>1, weight FROM signing_keys WHERE key_id = 'ed25519:a'`).Scan(&active, &seed, &meta, &weight); err != nil {
		t.Fatal(err)
	}
	if !active || !bytes.Equal(seed, []byte{0, 0xff, 0x10}) || meta != "2" || weight != 1.5 {
		t.Errorf("row a: %v %x %q %v", active, seed, meta, weight)
	}
	var seq int64
	if err := conn.QueryRow(ctx, `INSERT INTO signing_keys (key_id, active, seed) VALUES ('ed25519:c', true, '') RETURNING seq`).Scan(&seq); err != nil {
		t.Fatal(err)
	}
	if seq != 4 { // 3 was used (and deleted) in SQLite
		t.Errorf("next identity %d, want 4", seq)
	}
}

// Events clients never see take negative positions (migration 0016): after
// a migration, new ones go on below the copied ones instead of colliding.
func TestApartPositionsContinue(t *testing.T) {
	needPostgres(t)
	cfg := smallSource(t)
	src := copySource(t, cfg)
	ctx := context.Background()
	sdb, err := sqlite.Open(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	room, err := sdb.UserMemberships(ctx, "@alice:localhost")
	if err != nil || len(room) != 1 {
		t.Fatalf("memberships %v %v", room, err)
	}
	outlier := func(id string) store.NewEvent {
		return store.NewEvent{EventID: id, RoomID: room[0].RoomID, Type: "m.room.member", StateKey: new(string), Sender: "@o:elsewhere", JSON: []byte(`{}`)}
	}
	if err := sdb.PersistOutliers(ctx, []store.NewEvent{outlier("$o1"), outlier("$o2")}); err != nil {
		t.Fatal(err)
	}
	sdb.Close()
	dsn := pgtest.NewDatabase(t)
	if code, out, errOut := run("--from", "sqlite:"+src, "--to", dsn); code != 0 {
		t.Fatalf("%d %s %s", code, out, errOut)
	}
	pdb, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pdb.Close()
	if err := pdb.PersistOutliers(ctx, []store.NewEvent{outlier("$o3")}); err != nil {
		t.Fatal(err)
	}
	got, err := pdb.GetPDUs(ctx, []string{"$o1", "$o2", "$o3"})
	if err != nil || len(got) != 3 {
		t.Fatalf("GetPDUs %v %v", got, err)
	}
	for _, p := range got {
		if p.Pos >= 0 || p.Kind != store.KindOutlier {
			t.Fatalf("%s at %d, kind %d", p.EventID, p.Pos, p.Kind)
		}
	}
}
