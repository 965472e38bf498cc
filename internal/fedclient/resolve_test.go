package fedclient

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"conclave/internal/outbound"
)

const versionPath = "/_matrix/federation/v1/version"

// Every branch of spec §Resolving server names, end to end: the request
// reaches the server discovery designates, with the Host header and the
// certificate name (SNI) the spec gives, and is signed for the server name
// before delegation.
func TestDiscoveryBranches(t *testing.T) {
	e := newEnv(t)
	o := port(e.other.port)
	e.setWellKnown("deleg.test", delegate("target.test:"+o))
	e.setWellKnown("delegip.test", delegate("127.0.0.1:"+o))
	e.setWellKnown("delegsrv.test", delegate("srvtarget.test"))
	e.setWellKnown("delegplain.test", delegate("plain2.test"))
	e.setWellKnown("redir.test", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/.well-known/matrix/server" {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
			return
		}
		delegate("target.test:"+o)(w, r)
	})
	e.setWellKnown("badjson.test", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"m.server":`)) })
	e.setWellKnown("nomserver.test", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"server":"x"}`)) })
	e.setWellKnown("big.test", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"m.server":"target.test:` + o + `","pad":"` + strings.Repeat("x", wellKnownMaxBody) + `"}`))
	})
	// A plain-HTTP server that would delegate, were it believed.
	plain := httptest.NewServer(http.HandlerFunc(delegate("target.test:" + o)))
	defer plain.Close()
	e.setWellKnown("http.test", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://target.test:"+port(plain.Listener.Addr().(*net.TCPAddr).Port)+"/x", http.StatusFound)
	})
	e.dns.srv["_matrix-fed._tcp.srvtarget.test"] = []*net.SRV{{Target: "b.test.", Port: uint16(e.other.port)}}
	e.dns.srv["_matrix-fed._tcp.srv.test"] = []*net.SRV{{Target: "b.test.", Port: uint16(e.other.port)}}
	e.dns.srv["_matrix._tcp.legacy.test"] = []*net.SRV{{Target: "b.test", Port: uint16(e.other.port)}}
	// _matrix-fed wins over _matrix when both exist.
	e.dns.srv["_matrix._tcp.srv.test"] = []*net.SRV{{Target: "nowhere.test", Port: 1}}
	c := e.client()
	defer c.CloseIdleConnections()

	for _, tc := range []struct {
		name      string // the destination server name
		at        *tlsServer
		host, sni string
	}{
		{"127.0.0.1", e.def, "127.0.0.1", ""},                          // 1: IP literal, 8448
		{"127.0.0.1:" + o, e.other, "127.0.0.1:" + o, ""},              // 1: IP literal with port
		{"name.test:" + o, e.other, "name.test:" + o, "name.test"},     // 2: host name with port
		{"deleg.test", e.other, "target.test:" + o, "target.test"},     // 3.2: delegated name with port
		{"delegip.test", e.other, "127.0.0.1:" + o, ""},                // 3.1: delegated IP with port
		{"delegsrv.test", e.other, "srvtarget.test", "srvtarget.test"}, // 3.3: SRV of the delegated name
		{"delegplain.test", e.def, "plain2.test", "plain2.test"},       // 3.5: delegated name on 8448
		{"redir.test", e.other, "target.test:" + o, "target.test"},     // 3: redirects followed
		{"srv.test", e.other, "srv.test", "srv.test"},                  // 4: _matrix-fed._tcp
		{"legacy.test", e.other, "legacy.test", "legacy.test"},         // 5: _matrix._tcp
		{"plain.test", e.def, "plain.test", "plain.test"},              // 6: 8448
		{"badjson.test", e.def, "badjson.test", "badjson.test"},        // invalid well-known: as none
		{"nomserver.test", e.def, "nomserver.test", "nomserver.test"},
		{"big.test", e.def, "big.test", "big.test"},    // oversized well-known: as none
		{"http.test", e.def, "http.test", "http.test"}, // redirect to http: refused, as none
	} {
		before := len(tc.at.requests())
		if err := c.Do(context.Background(), "GET", tc.name, versionPath, nil, nil, nil); err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		reqs := tc.at.requests()
		if len(reqs) != before+1 {
			t.Errorf("%s: request did not reach the expected server", tc.name)
			continue
		}
		r := reqs[len(reqs)-1]
		if r.Host != tc.host || r.SNI != tc.sni {
			t.Errorf("%s: Host %q SNI %q, want %q %q", tc.name, r.Host, r.SNI, tc.host, tc.sni)
		}
		checkSigned(t, r, e.key, "origin.test", tc.name)
	}
}

// IPv6 literals, with and without a port (needs an IPv6 loopback).
func TestDiscoveryIPv6(t *testing.T) {
	e := newEnv(t)
	s6 := startTLS(t, e.cert, "[::1]:0", nil)
	c := e.client()
	defer c.CloseIdleConnections()
	name := "[::1]:" + port(s6.port)
	if err := c.Do(context.Background(), "GET", name, versionPath, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	r := s6.last(t)
	if r.Host != name || r.SNI != "" {
		t.Fatalf("Host %q SNI %q", r.Host, r.SNI)
	}
	checkSigned(t, r, e.key, "origin.test", name)
	tgt, err := c.Resolve(context.Background(), "[::1]")
	if err != nil || !reflect.DeepEqual(tgt, Target{Addrs: []string{"[::1]:" + port(e.def.port)}, Host: "[::1]", TLSName: "::1"}) {
		t.Fatalf("[::1] without port: %+v %v", tgt, err)
	}
}

// Discovery without test ports: the spec's defaults.
func TestDiscoveryDefaults(t *testing.T) {
	d := newDNS()
	c := New(Options{ServerName: "o.test", Resolver: d})
	for name, want := range map[string]Target{
		"1.2.3.4":           {Addrs: []string{"1.2.3.4:8448"}, Host: "1.2.3.4", TLSName: "1.2.3.4"},
		"[2001:db8::1]:99":  {Addrs: []string{"[2001:db8::1]:99"}, Host: "[2001:db8::1]:99", TLSName: "2001:db8::1"},
		"Example.TEST:8449": {Addrs: []string{"example.test:8449"}, Host: "Example.TEST:8449", TLSName: "example.test"},
	} {
		got, err := c.Resolve(context.Background(), name)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %+v %v", name, got, err)
		}
	}
	for _, bad := range []string{"", "a b", "host:0", "host:99999", "[::1"} {
		if _, err := c.Resolve(context.Background(), bad); err == nil {
			t.Errorf("%q resolved", bad)
		}
	}
	if d.count() != 0 {
		t.Fatalf("IP literals and explicit ports made %d DNS lookups", d.count())
	}
}

func TestWellKnownCache(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	defer c.CloseIdleConnections()
	ctx := context.Background()
	resolve := func(name string) Target {
		t.Helper()
		tgt, err := c.Resolve(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return tgt
	}

	// Default 24 h.
	e.setWellKnown("cached.test", delegate("target.test:1"))
	resolve("cached.test")
	e.clock.advance(23 * time.Hour)
	if resolve("cached.test").Host != "target.test:1" || e.fetches("cached.test") != 1 {
		t.Fatalf("not cached for 24 h: %d fetches", e.fetches("cached.test"))
	}
	e.clock.advance(2 * time.Hour)
	resolve("cached.test")
	if e.fetches("cached.test") != 2 {
		t.Fatalf("not refetched after 24 h: %d", e.fetches("cached.test"))
	}

	// max-age honoured, and capped at 48 h.
	e.setWellKnown("deleg.test", delegate("target.test:2", "Cache-Control", "public, max-age=60"))
	resolve("deleg.test")
	e.clock.advance(59 * time.Second)
	resolve("deleg.test")
	e.clock.advance(2 * time.Second)
	resolve("deleg.test")
	if n := e.fetches("deleg.test"); n != 2 {
		t.Fatalf("max-age=60: %d fetches", n)
	}
	e.setWellKnown("name.test", delegate("target.test:3", "Cache-Control", "max-age=31536000"))
	resolve("name.test")
	e.clock.advance(47 * time.Hour)
	resolve("name.test")
	e.clock.advance(2 * time.Hour)
	resolve("name.test")
	if n := e.fetches("name.test"); n != 2 {
		t.Fatalf("max-age capped at 48 h: %d fetches", n)
	}

	// A 404 is cached for an hour.
	resolve("plain.test")
	e.clock.advance(59 * time.Minute)
	resolve("plain.test")
	if n := e.fetches("plain.test"); n != 1 {
		t.Fatalf("404 cached an hour: %d fetches", n)
	}
	e.clock.advance(2 * time.Minute)
	resolve("plain.test")
	if n := e.fetches("plain.test"); n != 2 {
		t.Fatalf("404 refetched after an hour: %d fetches", n)
	}
}

// Failures to get an answer back off exponentially from two minutes to an
// hour; a delegation seen before is kept meanwhile.
func TestWellKnownBackoff(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	defer c.CloseIdleConnections()
	ctx := context.Background()
	e.setWellKnown("flaky.test", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) })
	if tgt, _ := c.Resolve(ctx, "flaky.test"); tgt.Host != "flaky.test" || e.fetches("flaky.test") != 1 {
		t.Fatalf("no delegation expected: %+v", tgt)
	}
	// Find when each next fetch happens, minute by minute.
	var waits []time.Duration
	for i := 0; i < 7; i++ {
		n := e.fetches("flaky.test")
		var waited time.Duration
		for e.fetches("flaky.test") == n {
			e.clock.advance(time.Minute)
			waited += time.Minute
			if tgt, _ := c.Resolve(ctx, "flaky.test"); tgt.Host != "flaky.test" {
				t.Fatalf("no delegation expected: %+v", tgt)
			}
			if waited > 2*time.Hour {
				t.Fatal("never refetched")
			}
		}
		waits = append(waits, waited)
	}
	want := []time.Duration{2, 4, 8, 16, 32, 60, 60}
	for i := range want {
		if waits[i] != want[i]*time.Minute {
			t.Fatalf("back-off %v, want minutes %v", waits, want)
		}
	}

	// Unreachable (no such host): backs off the same way, no delegation.
	e.dns.mu.Lock()
	delete(e.dns.hosts, "down.test")
	e.dns.mu.Unlock()
	c.Resolve(ctx, "down.test")
	if e, ok := c.wk.cache.Get("down.test"); !ok || e.failures != 1 || e.delegated != "" {
		t.Fatalf("unreachable well-known: %+v", e)
	}

	// A delegation survives its well-known going down.
	e.setWellKnown("deleg.test", delegate("target.test:7", "Cache-Control", "max-age=10"))
	c.Resolve(ctx, "deleg.test")
	e.setWellKnown("deleg.test", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(502) })
	e.clock.advance(11 * time.Second)
	if tgt, _ := c.Resolve(ctx, "deleg.test"); tgt.Host != "target.test:7" || e.fetches("deleg.test") != 2 {
		t.Fatalf("delegation lost while well-known is down: %+v", tgt)
	}
}

// Without permission, discovery never leads to a private or loopback
// address: the well-known fetch, the SRV target and the fallback are all
// refused before connecting.
func TestPrivateAddressesRefused(t *testing.T) {
	e := newEnv(t)
	e.setWellKnown("deleg.test", delegate("target.test:"+port(e.other.port)))
	e.dns.srv["_matrix-fed._tcp.srv.test"] = []*net.SRV{{Target: "127.0.0.1", Port: uint16(e.other.port)}}
	strict := e.client(func(o *Options) { o.AllowPrivate = false })
	for _, name := range []string{"127.0.0.1:" + port(e.other.port), "name.test:" + port(e.other.port), "deleg.test", "srv.test", "plain.test", "[::ffff:127.0.0.1]:" + port(e.other.port)} {
		err := strict.Do(context.Background(), "GET", name, versionPath, nil, nil, nil)
		if !errors.Is(err, outbound.ErrForbiddenAddress) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, s := range []*tlsServer{e.def, e.other, e.wk} {
		if n := s.accepts.Load(); n != 0 {
			t.Fatalf("%d connections reached port %d", n, s.port)
		}
	}
	// A server named in federation_allow may be reached on a private
	// address; the same name works once private addresses are allowed.
	allowed := e.client(func(o *Options) {
		o.AllowPrivate = false
		o.Allow = []string{"name.test:" + port(e.other.port)}
	})
	defer allowed.CloseIdleConnections()
	if err := allowed.Do(context.Background(), "GET", "name.test:"+port(e.other.port), versionPath, nil, nil, nil); err != nil {
		t.Fatalf("allowed server on loopback: %v", err)
	}
}

// A name outside federation_allow is refused before any DNS lookup or
// connection; names in it work.
func TestAllowList(t *testing.T) {
	e := newEnv(t)
	o := port(e.other.port)
	c := e.client(func(opt *Options) { opt.Allow = []string{"allowed.test:" + o, "deleg.test"} })
	defer c.CloseIdleConnections()
	for _, name := range []string{"other.test:" + o, "allowed.test", "allowed.test:1", "plain.test", "127.0.0.1:" + o} {
		err := c.Do(context.Background(), "GET", name, versionPath, nil, nil, nil)
		if !IsNotAllowed(err) {
			t.Errorf("%s: %v", name, err)
		}
		if _, err := c.GetServerKeys(context.Background(), name); !IsNotAllowed(err) {
			t.Errorf("keys of %s: %v", name, err)
		}
	}
	if n := e.dns.count(); n != 0 {
		t.Fatalf("%d DNS lookups for refused names", n)
	}
	for _, s := range []*tlsServer{e.def, e.other, e.wk} {
		if n := s.accepts.Load(); n != 0 {
			t.Fatalf("%d connections for refused names", n)
		}
	}
	if err := c.Do(context.Background(), "GET", "Allowed.test:"+o, versionPath, nil, nil, nil); err != nil {
		t.Fatalf("allowed name: %v", err)
	}
	e.setWellKnown("deleg.test", delegate("target.test:"+o))
	if err := c.Do(context.Background(), "GET", "deleg.test", versionPath, nil, nil, nil); err != nil {
		t.Fatalf("allowed delegating name: %v", err)
	}
}

// Lookups of a host whose well-known is being fetched wait for that fetch
// rather than each fetching it.
func TestWellKnownFetchedOnce(t *testing.T) {
	e := newEnv(t)
	started, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	e.setWellKnown("cached.test", func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(started) })
		<-release
		delegate("target.test:9")(w, r)
	})
	c := e.client()
	defer c.CloseIdleConnections()
	const n = 8
	joined := make(chan struct{}, n)
	c.wk.joined = func() { joined <- struct{}{} }
	hosts := make(chan string, n+1)
	resolve := func() {
		tgt, err := c.Resolve(context.Background(), "cached.test")
		if err != nil {
			t.Error(err)
		}
		hosts <- tgt.Host
	}
	go resolve()
	<-started
	for i := 0; i < n; i++ {
		go resolve()
	}
	for i := 0; i < n; i++ {
		select {
		case <-joined:
		case <-time.After(10 * time.Second): // a failure guard, not an ordering
			close(release)
			t.Fatalf("only %d lookups waited for the fetch in flight", i)
		}
	}
	close(release)
	for i := 0; i < n+1; i++ {
		if h := <-hosts; h != "target.test:9" {
			t.Fatalf("lookup got %q", h)
		}
	}
	if f := e.fetches("cached.test"); f != 1 {
		t.Fatalf("%d fetches", f)
	}
}
