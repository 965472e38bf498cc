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
	return StartFederationEach(t, n, func(_ int, c *config.Config) {
		for _, o := range opts {
			o(c)
		}
	})
}

// StartFederationEach is StartFederation with options per server (i is the
// server's index): to leave one out of the others' circle, say.
func StartFederationEach(t testing.TB, n int, each func(i int, c *config.Config)) []*Server {
	t.Helper()
	return StartFederationWith(t, n, each, nil)
}

// StartFederationWith is StartFederationEach with homeserver options per
// server (nil: none), e.g. a WrapStore that watches what one server queues
// for the others.
func StartFederationWith(t testing.TB, n int, each func(i int, c *config.Config), hsOpts func(i int) homeserver.Options) []*Server {
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
		if each != nil {
			each(i, &cfg)
		}
		if os.Getenv(EnvDatabase) == "postgres" && cfg.Database == "" {
			cfg.Database = postgresFor(t, cfg.DataDir)
		}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		var o homeserver.Options
		if hsOpts != nil {
			o = hsOpts(i)
		}
		o.FederationListener = lns[i]
		servers[i] = startLogged(t, cfg, os.Stderr, o)
		servers[i].CA = ca
		servers[i].names = names
	}
	return servers
}

// Names are the names of the servers StartFederation started with this one.
func (s *Server) Names() []string { return s.names }

// OpenFederation lifts StartFederation's closed circle: the servers may
// contact, and be contacted by, any server.
func OpenFederation(c *config.Config) { c.FederationAllow = nil }

// Restart stops a server StartFederation started and starts it again on the
// same data, name and federation address (the client listener gets a new
// port): a server that was down for a while. Use the returned server.
func (s *Server) Restart(t testing.TB) *Server {
	t.Helper()
	s.Stop()
	ln, err := net.Listen("tcp", s.Config.FederationListen)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	n := startLogged(t, s.Config, os.Stderr, homeserver.Options{FederationListener: ln})
	n.CA, n.names = s.CA, s.names
	return n
}
