package hstest

import (
	"net"
	"os"
	"strconv"
	"testing"

	"conclave/internal/config"
	"conclave/internal/homeserver"
	"conclave/internal/tlsutil/tlstest"
)

// StartFederation starts n homeservers that federate with each other over
// loopback, the way several servers share one machine in production tests:
// one test CA issues each server's certificate and is trusted by all of
// them; each is named localhost:<port>, <port> being its federation
// listener's (bound before the configuration is built, and handed to the
// server open, so no other process can take the port meanwhile); they form
// a closed circle (federation_allow is the n names: any other name is
// refused without a connection) and may reach each other on loopback
// (federation_allow_private_addresses). Options apply last: OpenFederation
// lifts the circle. Server.CA is the CA, for tests that add fake servers.
func StartFederation(t testing.TB, n int, opts ...Option) []*Server {
	t.Helper()
	ca := tlstest.NewCA(t, tlstest.ECPKCS8)
	lns := make([]net.Listener, n)
	names := make([]string, n)
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		// Closing after the server has stopped is harmless; this covers a
		// server that failed to start.
		t.Cleanup(func() { ln.Close() })
		lns[i] = ln
		names[i] = "localhost:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	}
	servers := make([]*Server, n)
	for i := range servers {
		cfg := Default(t)
		cfg.ServerName = names[i]
		cfg.FederationListen = lns[i].Addr().String()
		cfg.TLSCACert, cfg.TLSCAKey = ca.CertFile, ca.KeyFile
		cfg.FederationAllow = append([]string(nil), names...)
		cfg.FederationAllowPrivate = true
		for _, o := range opts {
			o(&cfg)
		}
		if os.Getenv(EnvDatabase) == "postgres" && cfg.Database == "" {
			cfg.Database = postgresFor(t, cfg.DataDir)
		}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		servers[i] = startLogged(t, cfg, os.Stderr, homeserver.Options{FederationListener: lns[i]})
		servers[i].CA = ca
	}
	return servers
}

// OpenFederation lifts StartFederation's closed circle: the servers may
// contact, and be contacted by, any server.
func OpenFederation(c *config.Config) { c.FederationAllow = nil }
