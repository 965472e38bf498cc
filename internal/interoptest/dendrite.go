// Package interoptest runs Conclave against a second Matrix homeserver
// implementation, Dendrite, federating over loopback. It owns the Dendrite
// build (from the Go module proxy, pure Go, cached between runs), its
// configuration and process, and the interoperability tests.
//
// Dendrite is never vendored or committed: Binary downloads the module at
// DendriteVersion with the go command and builds cmd/dendrite with
// CGO_ENABLED=0 (Dendrite then uses modernc.org/sqlite, its pure-Go SQLite).
package interoptest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"conclave/internal/homeserver/hstest"
	"conclave/internal/tlsutil"
	"conclave/internal/tlsutil/tlstest"
)

// DendriteVersion is the Dendrite release the tests run against.
const DendriteVersion = "v0.15.2"

const dendriteModule = "github.com/element-hq/dendrite"

// EnvDendriteBin names a variable that points at a Dendrite binary to use
// instead of building one (a machine without the module proxy).
const EnvDendriteBin = "CONCLAVE_TEST_DENDRITE_BIN"

var (
	buildMu  sync.Mutex
	buildBin string
)

// Binary returns the path of a Dendrite DendriteVersion binary, building it
// on first use. The binary is kept in the user's cache directory under a
// name that holds the version, the Go version and the platform, so later
// runs (and the PostgreSQL pass of make test) reuse it; it is written under
// a temporary name and renamed into place, so concurrent test processes
// never see half a binary. When the module cannot be downloaded (no network,
// no proxy) the test is skipped, except under CI=true where it fails.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(EnvDendriteBin); p != "" {
		return p
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildBin != "" {
		return buildBin
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	key := fmt.Sprintf("dendrite-%s-%s-%s-%s", DendriteVersion, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	dir := filepath.Join(cache, "conclave-test", key)
	bin := filepath.Join(dir, "dendrite")
	if works(bin) {
		buildBin = bin
		return bin
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		// A read-only home: the temporary directory, kept between runs too.
		dir = filepath.Join(os.TempDir(), "conclave-test", key)
		bin = filepath.Join(dir, "dendrite")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if works(bin) {
			buildBin = bin
			return bin
		}
	}
	start := time.Now()
	if err := build(dir, bin); err != nil {
		var off offlineError
		if errors.As(err, &off) && os.Getenv("CI") != "true" {
			t.Skipf("Dendrite %s cannot be built here (the module proxy is not reachable): %v", DendriteVersion, err)
		}
		t.Fatalf("building Dendrite %s: %v", DendriteVersion, err)
	}
	t.Logf("built Dendrite %s in %s: %s", DendriteVersion, time.Since(start).Round(time.Second), bin)
	buildBin = bin
	return bin
}

// works says whether bin is a Dendrite binary that runs.
func works(bin string) bool {
	out, err := exec.Command(bin, "-version").CombinedOutput()
	return err == nil && bytes.Contains(out, []byte(strings.TrimPrefix(DendriteVersion, "v")))
}

// offlineError is a failure to fetch Dendrite's sources, as opposed to a
// failure to build them.
type offlineError struct{ err error }

func (e offlineError) Error() string { return e.err.Error() }

func goCommand() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); runtime.GOROOT() != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "go"
}

// build downloads the module, copies it to a scratch directory (the module
// cache is read-only), fetches the packages cmd/dendrite needs (a failure
// there is offlineError) and builds it into bin.
func build(cacheDir, bin string) error {
	gocmd := goCommand()
	scratch, err := os.MkdirTemp(cacheDir, "build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	// Outside this module and any workspace; the module's own go.sum is
	// what the build checks against.
	env := append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly", "CGO_ENABLED=0")
	run := func(dir string, args ...string) ([]byte, error) {
		cmd := exec.Command(gocmd, args...)
		cmd.Dir = dir
		cmd.Env = env
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			// go mod download -json reports its error on stdout.
			return out, fmt.Errorf("go %s: %v\n%s%s", strings.Join(args, " "), err, tail(stderr.String(), 40), tail(string(out), 10))
		}
		return out, nil
	}
	out, err := run(scratch, "mod", "download", "-json", dendriteModule+"@"+DendriteVersion)
	if err != nil {
		return offlineError{err}
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return offlineError{fmt.Errorf("go mod download: %s %s", mod.Error, out)}
	}
	src := filepath.Join(scratch, "src")
	if err := copyTree(mod.Dir, src); err != nil {
		return err
	}
	if _, err := run(src, "list", "-deps", "./cmd/dendrite"); err != nil {
		return offlineError{err}
	}
	tmp := filepath.Join(scratch, "dendrite")
	if _, err := run(src, "build", "-trimpath", "-ldflags=-s -w", "-o", tmp, "./cmd/dendrite"); err != nil {
		return err
	}
	return os.Rename(tmp, bin)
}

// copyTree copies a directory of regular files, making them writable.
func copyTree(from, to string) error {
	return filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(from, p)
		if err != nil {
			return err
		}
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, data, 0o644)
	})
}

func tail(s string, lines int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// Dendrite is a running Dendrite process.
type Dendrite struct {
	// Name is its server name, localhost:<federation port>.
	Name string
	// URL is its client API over plain HTTP, http://127.0.0.1:<port>.
	URL string
	// Client talks to its client API with hstest's helpers (Do, MustOK,
	// Register): an hstest.Server that has only URL and ServerName.
	Client *hstest.Server

	bin  string
	args []string
	env  []string
	dir  string
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// freePort returns a loopback port nobody listens on now. Dendrite binds its
// own listeners, so the port is free only until then: another process could
// take it in between, which would show as Dendrite failing to start.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// ReserveName picks the federation port of a Dendrite about to start and
// returns its server name, localhost:<port>: the Conclave servers' closed
// circle must name it before they start.
func ReserveName(t testing.TB) string {
	return "localhost:" + strconv.Itoa(freePort(t))
}

// StartDendrite runs Dendrite named name (from ReserveName) until the test
// ends: SQLite databases in a temporary directory; federation over TLS on
// name's port with a certificate for localhost issued by ca, the test CA of
// the Conclave servers; open registration; no rate limits; outbound
// federation allowed to loopback addresses only; no key notaries (keys are
// fetched from each server directly).
//
// Dendrite verifies the Conclave servers' certificates: its process gets
// SSL_CERT_FILE=ca, which Go's crypto/x509 reads as the system roots on
// Unix, so disable_tls_validation stays off.
func StartDendrite(t testing.TB, bin, name string, ca *tlstest.CA) *Dendrite {
	t.Helper()
	dir := t.TempDir()
	fedAddr := "127.0.0.1" + name[strings.LastIndexByte(name, ':'):]
	clientAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))

	// The signing key: a PEM block Dendrite reads as an ed25519 seed.
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "MATRIX PRIVATE KEY", Headers: map[string]string{"Key-ID": "ed25519:interop"}, Bytes: seed})
	writeFile(t, filepath.Join(dir, "matrix_key.pem"), keyPEM)

	cert, err := tlsutil.Issue(ca.Cert, ca.Key, name, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var chain []byte
	for _, der := range cert.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "tls.crt"), chain)
	writeFile(t, filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}))
	writeFile(t, filepath.Join(dir, "dendrite.yaml"), []byte(dendriteConfig(name, dir)))

	// Only the test CA: SSL_CERT_DIR too, or Go would add the system's.
	trust := filepath.Join(dir, "trust")
	if err := os.Mkdir(trust, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(trust, "ca.crt"), ca.CertPEM)
	d := &Dendrite{Name: name, URL: "http://" + clientAddr, bin: bin, dir: dir,
		args: []string{
			"-config", filepath.Join(dir, "dendrite.yaml"),
			"-http-bind-address", clientAddr,
			"-https-bind-address", fedAddr,
			"-tls-cert", filepath.Join(dir, "tls.crt"),
			"-tls-key", filepath.Join(dir, "tls.key"),
			"-really-enable-open-registration",
		},
		env: append(os.Environ(), "SSL_CERT_FILE="+filepath.Join(trust, "ca.crt"), "SSL_CERT_DIR="+trust),
	}
	// Its own client, one connection per request: a keep-alive connection
	// pooled in the shared client for another server that once had this
	// port, or one Dendrite closed while idle, would answer a POST with EOF
	// (Go retries only idempotent requests on such a connection).
	d.Client = &hstest.Server{URL: d.URL, ServerName: name, HTTP: &http.Client{
		Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
	}}
	t.Cleanup(func() {
		d.Stop()
		switch {
		case os.Getenv("CONCLAVE_TEST_LOG") != "":
			t.Logf("Dendrite %s log:\n%s", name, d.logTail(100000))
		case t.Failed():
			t.Logf("Dendrite %s log (last lines):\n%s", name, d.logTail(80))
		}
	})
	d.start(t)
	return d
}

// start runs the process (its log appended to dendrite.log) and waits until
// it serves. The client port came from freePort, so another process may
// have taken it since: when Dendrite exits because its client address is in
// use, it is started again on a new one (the federation port is the server
// name's and cannot move).
func (d *Dendrite) start(t testing.TB) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		logStart := d.logSize()
		d.run(t)
		if d.waitReady(t) {
			return
		}
		clientAddr := strings.TrimPrefix(d.URL, "http://")
		log := d.logSince(logStart)
		if attempt < 5 && strings.Contains(log, "address already in use") && strings.Contains(log, clientAddr) {
			t.Logf("Dendrite %s: client address %s taken meanwhile, trying another", d.Name, clientAddr)
			d.setClientAddr("127.0.0.1:" + strconv.Itoa(freePort(t)))
			continue
		}
		t.Fatalf("Dendrite exited before serving:\n%s", d.logTail(60))
	}
}

// run starts the process.
func (d *Dendrite) run(t testing.TB) {
	t.Helper()
	logFile, err := os.OpenFile(filepath.Join(d.dir, "dendrite.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(d.bin, d.args...)
	cmd.Dir = d.dir
	cmd.Env = d.env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatal(err)
	}
	done := make(chan struct{})
	d.cmd, d.done = cmd, done
	go func() {
		cmd.Wait()
		logFile.Close()
		close(done)
	}()
}

// setClientAddr moves the client API to addr (before a start).
func (d *Dendrite) setClientAddr(addr string) {
	for i, a := range d.args {
		if a == "-http-bind-address" && i+1 < len(d.args) {
			d.args[i+1] = addr
		}
	}
	d.URL = "http://" + addr
	d.Client.URL = d.URL
}

// logSize is the length of dendrite.log now (0 if there is none yet).
func (d *Dendrite) logSize() int64 {
	fi, err := os.Stat(filepath.Join(d.dir, "dendrite.log"))
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logSince is dendrite.log from offset on.
func (d *Dendrite) logSince(offset int64) string {
	b, err := os.ReadFile(filepath.Join(d.dir, "dendrite.log"))
	if err != nil || offset > int64(len(b)) {
		return ""
	}
	return string(b[offset:])
}

// Restart stops Dendrite and starts it again on the same data, name and
// ports: a server that was down for a while.
func (d *Dendrite) Restart(t testing.TB) {
	t.Helper()
	d.Stop()
	d.start(t)
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// dendriteConfig is a Dendrite configuration (version 2) for name with
// everything under dir. Fields not named keep Dendrite's defaults.
func dendriteConfig(name, dir string) string {
	db := func(component string) string {
		return fmt.Sprintf("\n  database:\n    connection_string: file:%s\n", filepath.Join(dir, component+".db"))
	}
	return `version: 2
global:
  server_name: "` + name + `"
  private_key: ` + filepath.Join(dir, "matrix_key.pem") + `
  key_validity_period: 168h0m0s
  trusted_third_party_id_servers: []
  disable_federation: false
  presence:
    enable_inbound: false
    enable_outbound: false
  report_stats:
    enabled: false
  jetstream:
    storage_path: ` + dir + `
    in_memory: true
  dns_cache:
    enabled: false
client_api:
  registration_disabled: false
  guests_disabled: true
  registration_shared_secret: "interop-shared-secret"
  rate_limiting:
    enabled: false
federation_api:` + db("federationapi") + `  send_max_retries: 16
  disable_tls_validation: false
  key_perspectives: []
  prefer_direct_fetch: true
  deny_networks: []
  allow_networks: ["127.0.0.0/8", "::1/128"]
key_server:` + db("keyserver") + `media_api:` + db("mediaapi") + `  base_path: ` + filepath.Join(dir, "media") + `
mscs:` + db("mscs") + `relay_api:` + db("relayapi") + `room_server:` + db("roomserver") + `sync_api:` + db("syncapi") + `  search:
    enabled: false
user_api:
  bcrypt_cost: 4
  account_database:
    connection_string: file:` + filepath.Join(dir, "userapi.db") + `
tracing:
  enabled: false
logging:
  - type: std
    level: info
`
}

// waitReady polls the client API until it answers: Dendrite has no
// readiness signal besides listening. Bounded at 60 s (a loaded machine
// runs its migrations slowly). False when the process exited first.
func (d *Dendrite) waitReady(t testing.TB) bool {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		req, _ := http.NewRequestWithContext(ctx, "GET", d.URL+"/_matrix/client/versions", nil)
		res, err := d.Client.HTTP.Do(req)
		if err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
		cancel()
		if err == nil && res.StatusCode == http.StatusOK {
			return true
		}
		select {
		case <-d.done:
			return false
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("Dendrite did not serve within 60s:\n%s", d.logTail(60))
		}
	}
}

// Stop ends the process: SIGTERM, then SIGKILL after 10 s.
func (d *Dendrite) Stop() {
	if d.cmd == nil {
		return
	}
	select {
	case <-d.done:
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
	}
}

func (d *Dendrite) logTail(lines int) string {
	data, _ := os.ReadFile(filepath.Join(d.dir, "dendrite.log"))
	return tail(string(data), lines)
}
