package fedtest

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"conclave/internal/config"
	"conclave/internal/homeserver/hstest"
	"conclave/internal/store/storetest/pgtest"
)

// A server run as two processes on one PostgreSQL database federates as one
// server: a room made through one process is joined from another server
// through the other process's federation listener, messages sent through
// both processes at once all reach the other server, and what the other
// server sends is seen through both. Runs in the PostgreSQL pass.
func TestTwoProcessesFederateAsOneServer(t *testing.T) {
	if os.Getenv(hstest.EnvDatabase) != "postgres" {
		t.Skipf("needs %s=postgres (the PostgreSQL pass of make test)", hstest.EnvDatabase)
	}
	if testing.Short() {
		t.Skip("builds and runs the real binary")
	}
	bin := hstest.BuildBinary(t)
	dsn := pgtest.NewDatabase(t)
	port := func() int {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().(*net.TCPAddr).Port
	}
	// The server's name carries process 1's federation port: other servers
	// reach it there. Process 2 has a listener of its own nobody is told of.
	p1, p2 := port(), port()
	nameA := "localhost:" + strconv.Itoa(p1)
	b := hstest.StartFederationEach(t, 1, func(_ int, c *config.Config) { c.FederationAllow = append(c.FederationAllow, nameA) })[0]
	start := func(fedPort int) *hstest.Server {
		p := hstest.StartProcess(t, bin, nil, "serve", "--server-name", nameA, "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0",
			"--database", dsn, "--federation-listen", "127.0.0.1:"+strconv.Itoa(fedPort), "--tls-ca-cert", b.CA.CertFile, "--tls-ca-key", b.CA.KeyFile,
			"--federation-allow", nameA+","+b.ServerName, "--federation-allow-private-addresses",
			"--enable-registration", "--rate-limits=false", "--password-hash-memory-kib", "64",
			"--log-format", "json", "--log-level", "info", "--shutdown-timeout", "1s")
		s := &hstest.Server{URL: p.URL, ServerName: nameA}
		s.Proc = p
		return s
	}
	a1 := start(p1)
	a2 := start(p2)
	alice := a2.Register(t, "alice")
	bob := b.Register(t, "bob")
	roomID := a2.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	b.MustOK(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(nameA), bob.Token, map[string]any{})

	// Both processes send at once; every message reaches the other server.
	const n = 40
	var wg sync.WaitGroup
	for i, a := range []*hstest.Server{a1, a2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range n / 2 {
				k := i*(n/2) + j
				a.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/%s", roomID, fmt.Sprint("c", k)), alice.Token, map[string]any{"msgtype": "m.text", "body": fmt.Sprint("from A ", k)})
			}
		}()
	}
	wg.Wait()
	waitBodies(t, b, bob, roomID, "from A ", n, 60*time.Second)

	// What the other server sends is seen through either process.
	b.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/back", roomID), bob.Token, map[string]any{"msgtype": "m.text", "body": "from B 0"})
	waitBodies(t, a1, alice, roomID, "from B ", 1, 30*time.Second)
	waitBodies(t, a2, alice, roomID, "from B ", 1, 30*time.Second)
	for _, a := range []*hstest.Server{a1, a2} {
		if bad := a.Proc.BadLines(); len(bad) > 0 {
			t.Errorf("errors in a process's log: %v", bad)
		}
	}
}
