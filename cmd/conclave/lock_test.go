package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"conclave/internal/homeserver/hstest"
	"conclave/internal/store/storetest/pgtest"
)

// startServe runs the real binary on dataDir and returns once it listens.
func startServe(t *testing.T, bin, dataDir string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--server-name", "localhost", "--data-dir", dataDir, "--listen", "127.0.0.1:0",
		"--log-format", "json", "--shutdown-timeout", "1s")
	out, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	listening := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var line struct{ Msg string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" {
				listening <- true
			}
		}
		close(listening)
	}()
	select {
	case ok := <-listening:
		if !ok {
			t.Fatal("server exited before listening")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("server did not listen within 60s")
	}
	return cmd
}

// runOnce runs the binary to completion and returns its exit code and output.
func runOnce(t *testing.T, bin string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), out.String()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, out.String()
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("%v still running after 60s (it should have refused at once): %s", args, out.String())
	}
	return 0, ""
}

// A second server on the data directory of a running one (SQLite) refuses
// to start with one clear line and exit code 1, like other startup errors;
// so does a migration reading the database. Once the first is gone, even
// by SIGKILL, a new one starts.
func TestSecondServerOnOneSQLiteRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real binary")
	}
	bin := hstest.BuildBinary(t)
	dir := t.TempDir()
	first := startServe(t, bin, dir)

	code, out := runOnce(t, bin, "serve", "--server-name", "localhost", "--data-dir", dir, "--listen", "127.0.0.1:0", "--log-format", "text")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 1 || len(lines) != 1 || !strings.Contains(out, "conclave.db is in use by another process (pid ") || !strings.Contains(out, "stop it first") {
		t.Fatalf("second serve: exit %d, output:\n%s", code, out)
	}
	t.Logf("second serve refused: %s", lines[0])

	if os.Getenv(hstest.EnvDatabase) == "postgres" {
		// The target must exist for migrate to get as far as the source.
		code, out = runOnce(t, bin, "migrate", "--from", "sqlite:"+dir, "--to", pgtest.NewDatabase(t))
		if code == 0 || !strings.Contains(out, "in use by another process") {
			t.Fatalf("migrate under a running server: exit %d, output:\n%s", code, out)
		}
		t.Logf("migrate refused: %s", strings.TrimSpace(out))
	}

	first.Process.Kill() // SIGKILL: the kernel releases the lock
	first.Wait()
	second := startServe(t, bin, dir)
	second.Process.Signal(os.Interrupt)
	second.Wait()
	third := startServe(t, bin, dir)
	third.Process.Kill()
	third.Wait()
}
