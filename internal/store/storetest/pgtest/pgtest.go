// Package pgtest gives tests a fresh, empty PostgreSQL database.
//
// The server is, in order of preference:
//   - the one $CONCLAVE_TEST_PG_DSN points at (an administrative DSN, e.g. the
//     one scripts/postgres-test.sh start prints): every test package of a run
//     then shares one server;
//   - a throwaway server this process starts on first use: initdb into a
//     temporary directory, postgres listening only on a Unix socket in that
//     directory, fsync off. It runs as the postgres user when the tests run as
//     root (initdb refuses root), and it dies with the test process (parent
//     death signal); directories left by killed runs are swept on the next start.
//
// Each NewDatabase call creates its own database with a random name and drops
// it when the test ends, so tests never see each other's rows.
//
// Without PostgreSQL binaries the tests are skipped, except under CI=true,
// where a missing PostgreSQL is a failure (CI must test both backends).
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvDSN names the variable holding an administrative DSN of a running server.
const EnvDSN = "CONCLAVE_TEST_PG_DSN"

var (
	once     sync.Once
	adminDSN string
	startErr error
)

// NewDatabase creates an empty database for the test and returns its
// postgres:// DSN; the database is dropped when the test ends.
func NewDatabase(t testing.TB) string {
	t.Helper()
	admin := AdminDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(ctx)
	var b [6]byte
	rand.Read(b[:])
	name := "conclave_test_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+name+` TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'`); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Errorf("pgtest: connect to drop %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil {
			t.Errorf("pgtest: drop %s: %v", name, err)
		}
	})
	return withDatabase(admin, name)
}

// AdminDSN returns the DSN of the test server's maintenance database,
// starting a server if needed (skipping or failing the test when PostgreSQL
// is not available).
func AdminDSN(t testing.TB) string {
	t.Helper()
	once.Do(func() {
		if dsn := os.Getenv(EnvDSN); dsn != "" {
			adminDSN = dsn
			return
		}
		adminDSN, startErr = startServer()
	})
	if startErr != nil {
		if errors.Is(startErr, errNoPostgres) && os.Getenv("CI") != "true" {
			t.Skipf("pgtest: %v (install the Debian postgresql package, or set %s)", startErr, EnvDSN)
		}
		t.Fatalf("pgtest: %v", startErr)
	}
	return adminDSN
}

// withDatabase replaces the database name in a postgres:// URL.
func withDatabase(dsn, name string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return dsn
	}
	u.Path = "/" + name
	return u.String()
}

var errNoPostgres = errors.New("PostgreSQL server binaries (initdb, postgres) not found")

// binDir finds the directory holding initdb and postgres: next to initdb on
// PATH, or the newest /usr/lib/postgresql/N/bin (Debian keeps them there).
func binDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		d := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			return d, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errNoPostgres
}

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

const dirPrefix = "conclave-pgtest-"

func startServer() (string, error) {
	bin, err := binDir()
	if err != nil {
		return "", err
	}
	sweep()
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return "", err
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		// initdb and postgres refuse to run as root.
		u, err := user.Lookup("postgres")
		if err != nil {
			return "", fmt.Errorf("running as root and no postgres user to run the server as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			return "", err
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("initdb: %v: %s", err, out)
	}
	started := make(chan error, 1)
	go func() {
		// Pdeathsig is tied to the thread that forked the server: keep this
		// goroutine on its thread for as long as the server runs.
		runtime.LockOSThread()
		cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-k", dir,
			"-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off",
			"-c", "full_page_writes=off", "-c", "max_connections=300", "-c", "shared_buffers=64MB")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGINT, Setpgid: true}
		log, err := os.Create(filepath.Join(dir, "server.log"))
		if err == nil {
			cmd.Stdout, cmd.Stderr = log, log
		}
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		cmd.Wait()
		os.RemoveAll(dir)
	}()
	if err := <-started; err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("start postgres: %w", err)
	}
	dsn := "postgres://postgres@/postgres?host=" + url.QueryEscape(dir)
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, err := pgx.Connect(ctx, dsn)
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return dsn, nil
		}
		if time.Now().After(deadline) {
			logText, _ := os.ReadFile(filepath.Join(dir, "server.log"))
			return "", fmt.Errorf("postgres did not accept connections in 60s: %v\n%s", err, logText)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sweep removes the directories of throwaway servers whose process is gone
// (a test binary killed before its server could clean up).
func sweep() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, d := range dirs {
		fi, err := os.Stat(d)
		if err != nil || time.Since(fi.ModTime()) < time.Minute {
			continue
		}
		pidText, err := os.ReadFile(filepath.Join(d, "data", "postmaster.pid"))
		if err == nil {
			line, _, _ := strings.Cut(string(pidText), "\n")
			if pid, err := strconv.Atoi(strings.TrimSpace(line)); err == nil && syscall.Kill(pid, 0) == nil {
				continue // still running
			}
		}
		os.RemoveAll(d)
	}
}
