package fedtest

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"conclave/internal/config"
	"conclave/internal/homeserver/hstest"
	"conclave/internal/store/storetest/pgtest"
)

// killableServer is the harness of the SIGKILL tests: a real conclave
// process (a, restartable on the same name, data and database) federating
// with an in-process server b.
type killableServer struct {
	dsn   string
	b     *hstest.Server
	start func() *hstest.Server
}

// startKillable builds the binary and starts b; k.start starts a (again),
// on SQLite in its data directory or, with onPostgres, on a PostgreSQL
// database (the test skips without PostgreSQL, and fails under CI).
func startKillable(t *testing.T, onPostgres bool) *killableServer {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the real binary")
	}
	k := &killableServer{}
	if onPostgres {
		k.dsn = pgtest.NewDatabase(t)
	}
	bin := hstest.BuildBinary(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	portA := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	nameA := "localhost:" + strconv.Itoa(portA)
	k.b = hstest.StartFederationEach(t, 1, func(_ int, c *config.Config) { c.FederationAllow = append(c.FederationAllow, nameA) })[0]
	dirA := t.TempDir()
	k.start = func() *hstest.Server {
		args := []string{"serve", "--server-name", nameA, "--data-dir", dirA, "--listen", "127.0.0.1:0",
			"--federation-listen", "127.0.0.1:" + strconv.Itoa(portA), "--tls-ca-cert", k.b.CA.CertFile, "--tls-ca-key", k.b.CA.KeyFile,
			"--federation-allow", nameA + "," + k.b.ServerName, "--federation-allow-private-addresses",
			"--enable-registration", "--rate-limits=false", "--password-hash-memory-kib", "64",
			"--log-format", "json", "--log-level", "info", "--shutdown-timeout", "1s"}
		if k.dsn != "" {
			args = append(args, "--database", k.dsn)
		}
		p := hstest.StartProcess(t, bin, nil, args...)
		return &hstest.Server{URL: p.URL, ServerName: nameA, Proc: p}
	}
	return k
}

// killWhileQueueing sends PUT path with body as token to a, and SIGKILLs a
// while that request waits to write into table (a queue of the federation
// sender): another session holds the table locked — reading it goes on,
// writing it waits — so the process dies exactly at that write. The
// request never gets its answer.
func (k *killableServer) killWhileQueueing(t *testing.T, a *hstest.Server, table, path, token, body string) {
	t.Helper()
	ctx := context.Background()
	lock, err := pgx.Connect(ctx, k.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close(ctx)
	tx, err := lock.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE `+pgx.Identifier{table}.Sanitize()+` IN EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	go func() {
		req, _ := http.NewRequest("PUT", a.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
		}
	}()
	waitUntil(t, "the write into "+table+" waiting for the lock", func() bool {
		var n int
		err := lock.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE relation = $1::regclass AND NOT granted
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`, table).Scan(&n)
		return err == nil && n > 0
	})
	a.Proc.Cmd.Process.Kill() // SIGKILL
	a.Proc.Cmd.Wait()
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
}
