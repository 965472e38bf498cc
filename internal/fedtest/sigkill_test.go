package fedtest

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"testing"
	"time"

	"conclave/internal/config"
	"conclave/internal/homeserver/hstest"
)

// A sending server SIGKILLed with a full queue delivers everything it
// acknowledged after it restarts: the queue is in its database, not in its
// memory. The sender is a real conclave process; the receiver was down
// meanwhile.
func TestSenderKilledWithFullQueueDeliversAfterRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real binary")
	}
	bin := hstest.BuildBinary(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	portA := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	nameA := "localhost:" + strconv.Itoa(portA)
	b := hstest.StartFederationEach(t, 1, func(_ int, c *config.Config) { c.FederationAllow = append(c.FederationAllow, nameA) })[0]
	dirA := t.TempDir()
	startA := func() *hstest.Server {
		p := hstest.StartProcess(t, bin, nil, "serve", "--server-name", nameA, "--data-dir", dirA, "--listen", "127.0.0.1:0",
			"--federation-listen", "127.0.0.1:"+strconv.Itoa(portA), "--tls-ca-cert", b.CA.CertFile, "--tls-ca-key", b.CA.KeyFile,
			"--federation-allow", nameA+","+b.ServerName, "--federation-allow-private-addresses",
			"--enable-registration", "--rate-limits=false", "--password-hash-memory-kib", "64",
			"--log-format", "json", "--log-level", "info", "--shutdown-timeout", "1s")
		s := &hstest.Server{URL: p.URL, ServerName: nameA}
		s.Proc = p
		return s
	}
	a := startA()
	alice := a.Register(t, "alice")
	bob := b.Register(t, "bob")
	roomID := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	b.MustOK(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(nameA), bob.Token, map[string]any{})

	b.Stop()
	const n = 120
	for i := 0; i < n; i++ {
		a.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/%s", roomID, fmt.Sprint("q", i)), alice.Token, map[string]any{"msgtype": "m.text", "body": fmt.Sprint("queued ", i)})
	}
	a.Proc.Cmd.Process.Kill() // SIGKILL: nothing is flushed
	a.Proc.Cmd.Wait()

	b = b.Restart(t)
	a = startA()
	// Bob talks to alice's server again, which ends its back-off for his.
	b.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/back", roomID), bob.Token, map[string]any{"msgtype": "m.text", "body": "back"})
	waitBodies(t, b, bob, roomID, "queued ", n, 60*time.Second)
}
