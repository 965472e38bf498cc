// Package clamdtest starts a private clamd for tests: its database holds
// only a signature for the EICAR test string (no virus database can be
// downloaded in CI), and it listens on a loopback TCP port and a unix socket
// in a temporary directory.
//
// When clamd is not installed the test fails if CI=true (scripts/clamd-test.sh
// install provides it) and is skipped otherwise.
package clamdtest

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"conclave/internal/clamd"
)

// Signature is the name clamd reports for the EICAR test string.
const Signature = "Conclave.Test.EICAR.UNOFFICIAL"

// EICAR returns the EICAR antivirus test file. It is assembled at run time
// so this source file is not itself flagged by scanners.
func EICAR() []byte {
	return []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$` + "EICAR-STANDARD-" + "ANTIVIRUS-TEST-FILE!$H+H*")
}

// Daemon is a running clamd.
type Daemon struct {
	TCP  string // tcp:127.0.0.1:PORT
	Unix string // unix:/path/to/socket
}

// Binary finds clamd.
func Binary() (string, bool) {
	if p, err := exec.LookPath("clamd"); err == nil {
		return p, true
	}
	for _, p := range []string{"/usr/sbin/clamd", "/usr/local/sbin/clamd"} {
		if _, err := os.Stat(p); err == nil {
			return p, true
		}
	}
	return "", false
}

// Start runs clamd until the test ends.
func Start(t testing.TB) *Daemon {
	t.Helper()
	bin, ok := Binary()
	if !ok {
		if os.Getenv("CI") == "true" {
			t.Fatal("clamd is not installed; run scripts/clamd-test.sh install (apt-get install clamav-daemon)")
		}
		t.Skip("clamd is not installed (apt-get install clamav-daemon); skipping the antivirus test")
	}
	// A short directory: unix socket paths are limited to ~108 bytes.
	dir, err := os.MkdirTemp("", "clamd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	db := filepath.Join(dir, "db")
	if err := os.Mkdir(db, 0o755); err != nil {
		t.Fatal(err)
	}
	// An extended (.ndb) signature: any file containing the EICAR marker.
	sig := fmt.Sprintf("%s:0:*:%s\n", strings.TrimSuffix(Signature, ".UNOFFICIAL"), hex.EncodeToString([]byte("EICAR-STANDARD-ANTIVIRUS-TEST-FILE")))
	if err := os.WriteFile(filepath.Join(db, "conclave-test.ndb"), []byte(sig), 0o644); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	sock := filepath.Join(dir, "clamd.sock")
	conf := strings.Join([]string{
		"DatabaseDirectory " + db,
		"LocalSocket " + sock,
		"TCPSocket " + port,
		"TCPAddr 127.0.0.1",
		"Foreground yes",
		"StreamMaxLength 100M",
		"LogFile " + filepath.Join(dir, "clamd.log"),
		"TemporaryDirectory " + dir,
		"MaxThreads 2",
		"SelfCheck 3600",
		"",
	}, "\n")
	confPath := filepath.Join(dir, "clamd.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", confPath)
	out, err := os.Create(filepath.Join(dir, "clamd.out"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start clamd: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); out.Close() }()
	t.Cleanup(func() {
		cmd.Process.Kill() // the clamd this test started, by its pid
		<-exited
	})
	d := &Daemon{TCP: "tcp:127.0.0.1:" + port, Unix: "unix:" + sock}
	c, _ := clamd.Parse(d.Unix)
	tc, _ := clamd.Parse(d.TCP)
	deadline := time.Now().Add(90 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := c.Ping(ctx)
		if err == nil {
			err = tc.Ping(ctx)
		}
		cancel()
		if err == nil {
			return d
		}
		select {
		case e := <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "clamd.out"))
			t.Fatalf("clamd exited (%v):\n%s", e, log)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "clamd.out"))
			t.Fatalf("clamd did not answer within 90s: %v\n%s", err, log)
		}
	}
}

func freePort(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}
