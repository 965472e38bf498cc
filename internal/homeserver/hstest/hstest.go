// Package hstest starts a real Conclave in-process on a random loopback port
// with a temporary data directory, for integration tests that talk HTTP the
// way clients do.
package hstest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"conclave/internal/accounts"
	"conclave/internal/config"
	"conclave/internal/homeserver"
	"conclave/internal/store"
	"conclave/internal/store/storetest/pgtest"
	"conclave/internal/tlsutil/tlstest"
)

// Server is a running test homeserver.
type Server struct {
	HS     *homeserver.Homeserver
	URL    string // http://127.0.0.1:port
	Config config.Config
	cancel context.CancelFunc
	done   chan error

	// FederationURL is https://127.0.0.1:port when federation_listen is set.
	FederationURL string
	// AdminURL is http://127.0.0.1:port when admin_listen is set (WithAdmin).
	AdminURL string
	// ServerName is the configured server name.
	ServerName string
	// CA is the test CA of StartFederation's servers (nil otherwise).
	CA *tlstest.CA

	names []string // StartFederation's names
	// Proc is the real process behind a Server made for one (StartProcess).
	Proc *Process
	// HTTP sends Do's requests; nil means http.DefaultClient. A server in
	// another process (Dendrite) gets its own, so that no connection pooled
	// for an earlier server on the same port can be reused for it.
	HTTP *http.Client
}

// EnvDatabase names the variable that picks the test servers' database:
// "postgres" gives every server started by Start a fresh PostgreSQL
// database (see storetest/pgtest); anything else keeps SQLite files.
const EnvDatabase = "CONCLAVE_TEST_DATABASE"

var (
	pgMu  sync.Mutex
	pgDBs = map[string]string{} // data dir → database URL
)

// postgresFor returns the PostgreSQL database of a data directory, creating
// it on first use: a test that restarts a server on the same data directory
// finds its data again, as it would with SQLite.
func postgresFor(t testing.TB, dataDir string) string {
	pgMu.Lock()
	defer pgMu.Unlock()
	if dsn, ok := pgDBs[dataDir]; ok {
		return dsn
	}
	dsn := pgtest.NewDatabase(t)
	pgDBs[dataDir] = dsn
	return dsn
}

// Option changes the configuration before start.
type Option func(*config.Config)

// WithAdmin turns on the admin listener (metrics and pprof) on a random
// loopback port: Server.AdminURL.
func WithAdmin(c *config.Config) { c.AdminListen = "127.0.0.1:0" }

// Start runs a homeserver until the test ends. Open registration is on and
// rate limits are off unless an option says otherwise.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	return StartWith(t, homeserver.Options{}, opts...)
}

// Default is the configuration Start begins from.
func Default(t testing.TB) config.Config {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.EnableRegistration = true
	cfg.RateLimits = false
	cfg.RegistrationSharedSecret = "test-shared-secret"
	cfg.PasswordHashMemoryKiB = 64 // cheap hashes keep the suite fast
	cfg.ShutdownTimeout = config.Duration{Duration: 2 * time.Second}
	return cfg
}

// StartConfig runs a homeserver with exactly cfg.
func StartConfig(t testing.TB, cfg config.Config) *Server {
	t.Helper()
	return startLogged(t, cfg, os.Stderr, homeserver.Options{})
}

// StartWith is Start with homeserver options (a store wrapper: Gates).
func StartWith(t testing.TB, hsOpts homeserver.Options, opts ...Option) *Server {
	t.Helper()
	cfg := Default(t)
	for _, o := range opts {
		o(&cfg)
	}
	if os.Getenv(EnvDatabase) == "postgres" && cfg.Database == "" {
		cfg.Database = postgresFor(t, cfg.DataDir)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return startLogged(t, cfg, os.Stderr, hsOpts)
}

// StartLogged is Start with the server log (warnings and errors, including
// recovered panics) written to w, for tests that inspect it.
func StartLogged(t testing.TB, w io.Writer, opts ...Option) *Server {
	t.Helper()
	cfg := Default(t)
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return startLogged(t, cfg, w, homeserver.Options{})
}

func startLogged(t testing.TB, cfg config.Config, w io.Writer, hsOpts homeserver.Options) *Server {
	t.Helper()
	level := slog.LevelWarn
	if os.Getenv("CONCLAVE_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
	ctx, cancel := context.WithCancel(context.Background())
	hs, err := homeserver.NewWith(ctx, cfg, log, hsOpts)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	s := &Server{HS: hs, Config: cfg, ServerName: cfg.ServerName, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- hs.Run(ctx) }()
	select {
	case <-hs.Ready():
	case err := <-s.done:
		cancel()
		t.Fatalf("server did not start: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("server did not start in 10s")
	}
	s.URL = "http://" + hs.ClientAddr().String()
	if cfg.TLSCert != "" {
		s.URL = "https://" + hs.ClientAddr().String()
	}
	if a := hs.FederationAddr(); a != nil {
		s.FederationURL = "https://" + a.String()
	}
	if a := hs.AdminAddr(); a != nil {
		s.AdminURL = "http://" + a.String()
	}
	t.Cleanup(s.Stop)
	return s
}

// Stop shuts the server down and waits for it.
func (s *Server) Stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	<-s.done
}

// Response is a decoded JSON answer.
type Response struct {
	Status int
	Body   []byte
	JSON   map[string]any
}

// Str returns a top-level string field.
func (r *Response) Str(key string) string {
	s, _ := r.JSON[key].(string)
	return s
}

// Errcode returns the errcode of an error answer.
func (r *Response) Errcode() string { return r.Str("errcode") }

// Do sends a request: body may be nil, a string or []byte (sent as is), or
// any value (sent as JSON). token may be "".
func (s *Server) Do(t testing.TB, method, path, token string, body any) *Response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, s.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	client := s.HTTP
	if client == nil {
		client = http.DefaultClient
	}
	// What connection carried the request, for the message of a transport
	// failure: a reused idle connection the peer had closed reads as EOF.
	var conn httptrace.GotConnInfo
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { conn = info },
	}))
	res, err := client.Do(req)
	if err != nil {
		via := "no connection"
		if conn.Conn != nil {
			via = fmt.Sprintf("connection %s→%s reused=%v idle=%v for %v", conn.Conn.LocalAddr(), conn.Conn.RemoteAddr(), conn.Reused, conn.WasIdle, conn.IdleTime)
		}
		t.Fatalf("%s %s: %v (%s)", method, path, err, via)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	out := &Response{Status: res.StatusCode, Body: data}
	_ = json.Unmarshal(data, &out.JSON)
	return out
}

// MustOK is Do that fails the test unless the status is 200.
func (s *Server) MustOK(t testing.TB, method, path, token string, body any) *Response {
	t.Helper()
	r := s.Do(t, method, path, token, body)
	if r.Status != http.StatusOK {
		t.Fatalf("%s %s: status %d: %s", method, path, r.Status, r.Body)
	}
	return r
}

// User is a registered test user.
type User struct {
	UserID, DeviceID, Token string
}

// Register creates a user with open registration (m.login.dummy).
func (s *Server) Register(t testing.TB, localpart string) *User {
	t.Helper()
	body := map[string]any{"username": localpart, "password": "correct horse battery " + localpart, "auth": map[string]string{"type": "m.login.dummy"}}
	r := s.Do(t, "POST", "/_matrix/client/v3/register", "", body)
	if r.Status != http.StatusOK {
		t.Fatalf("register %s: %d %s", localpart, r.Status, r.Body)
	}
	return &User{UserID: r.Str("user_id"), DeviceID: r.Str("device_id"), Token: r.Str("access_token")}
}

// Path builds a client API path with escaped parameters: Path("/rooms/%s/send", id).
func Path(format string, args ...string) string {
	esc := make([]any, len(args))
	for i, a := range args {
		esc[i] = pathEscape(a)
	}
	return "/_matrix/client/v3" + fmt.Sprintf(format, esc...)
}

// CreateUser makes a user and a logged-in device straight in the store,
// bypassing /register, for tests of other areas.
func (s *Server) CreateUser(t testing.TB, localpart string) *User {
	t.Helper()
	return s.createUser(t, localpart, false)
}

// CreateAdmin is CreateUser for a server admin.
func (s *Server) CreateAdmin(t testing.TB, localpart string) *User {
	t.Helper()
	return s.createUser(t, localpart, true)
}

func (s *Server) createUser(t testing.TB, localpart string, admin bool) *User {
	t.Helper()
	ctx := context.Background()
	userID := "@" + localpart + ":" + s.Config.ServerName
	now := time.Now().UnixMilli()
	if err := s.HS.Store.CreateUser(ctx, &store.User{UserID: userID, IsAdmin: admin, CreatedTS: now}); err != nil {
		t.Fatalf("create user %s: %v", userID, err)
	}
	u := &User{UserID: userID, DeviceID: "DEV" + strings.ToUpper(localpart), Token: accounts.NewToken("syt_")}
	if err := s.HS.Store.CreateDevice(ctx, &store.Device{UserID: userID, DeviceID: u.DeviceID, CreatedTS: now}, store.NewToken{AccessHash: accounts.HashToken(u.Token)}); err != nil {
		t.Fatalf("create device: %v", err)
	}
	return u
}
