package fedclient

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"conclave/internal/event"
	"conclave/internal/tlsutil/tlstest"
	"conclave/internal/xmatrix"
)

// testNames are the host names the test certificate is valid for.
var testNames = []string{"name.test", "deleg.test", "target.test", "srvtarget.test", "plain2.test", "srv.test",
	"legacy.test", "plain.test", "redir.test", "badjson.test", "big.test", "flaky.test", "cached.test", "down.test",
	"b.test", "allowed.test", "other.test", "delegip.test", "delegsrv.test", "delegplain.test", "nomserver.test", "http.test"}

// leaf issues one certificate from ca for every test name and for the
// loopback addresses.
func leaf(t *testing.T, ca *tlstest.CA) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "fedclient test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     testNames,
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// seen is one request as a test server received it.
type seen struct {
	Host, SNI, Method, URI, Auth string
	Body                         []byte
}

// tlsServer is an HTTPS server on loopback that records requests and
// counts accepted connections.
type tlsServer struct {
	port    int
	accepts atomic.Int32
	mu      sync.Mutex
	reqs    []seen
	handler http.HandlerFunc
}

func (s *tlsServer) requests() []seen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seen(nil), s.reqs...)
}

func (s *tlsServer) last(t *testing.T) seen {
	t.Helper()
	r := s.requests()
	if len(r) == 0 {
		t.Fatal("no request reached the server")
	}
	return r[len(r)-1]
}

func startTLS(t *testing.T, cert tls.Certificate, addr string, h http.HandlerFunc) *tlsServer {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	s := &tlsServer{port: ln.Addr().(*net.TCPAddr).Port, handler: h}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			s.mu.Lock()
			s.reqs = append(s.reqs, seen{Host: r.Host, SNI: r.TLS.ServerName, Method: r.Method, URI: r.RequestURI, Auth: r.Header.Get("Authorization"), Body: body})
			s.mu.Unlock()
			r.Body = io.NopCloser(strings.NewReader(string(body)))
			if s.handler != nil {
				s.handler(w, r)
				return
			}
			w.Write([]byte(`{"server":{"name":"test"}}`))
		}),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				s.accepts.Add(1)
			}
		},
		ErrorLog: nil,
	}
	go srv.Serve(tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}}))
	t.Cleanup(func() { srv.Close() })
	return s
}

// fakeDNS answers A/AAAA and SRV from maps and counts questions.
type fakeDNS struct {
	mu      sync.Mutex
	hosts   map[string][]netip.Addr
	srv     map[string][]*net.SRV // "_matrix-fed._tcp.name"
	lookups int
}

func newDNS() *fakeDNS {
	d := &fakeDNS{hosts: map[string][]netip.Addr{}, srv: map[string][]*net.SRV{}}
	for _, n := range testNames {
		d.hosts[n] = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	}
	return d
}

func (d *fakeDNS) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lookups++
	if a, ok := d.hosts[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func (d *fakeDNS) LookupSRV(_ context.Context, service, proto, name string) (string, []*net.SRV, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lookups++
	q := "_" + service + "._" + proto + "." + name
	if s, ok := d.srv[q]; ok {
		return q, s, nil
	}
	return "", nil, &net.DNSError{Err: "no such host", Name: q, IsNotFound: true}
}

func (d *fakeDNS) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lookups
}

// clock is a settable Now.
type clock struct{ t atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.t.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) now() time.Time          { return time.Unix(0, c.t.Load()) }
func (c *clock) advance(d time.Duration) { c.t.Add(int64(d)) }

// env is a set of loopback servers standing for the ports of discovery:
// def is "8448", other is any explicit or SRV port, wk serves
// /.well-known/matrix/server ("443") with an answer per host.
type env struct {
	ca         *tlstest.CA
	cert       tls.Certificate
	def, other *tlsServer
	wk         *tlsServer
	dns        *fakeDNS
	clock      *clock
	key        *event.SigningKey

	mu        sync.Mutex
	wellKnown map[string]func(w http.ResponseWriter, r *http.Request)
	wkFetches map[string]int
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{ca: tlstest.NewCA(t, tlstest.ECPKCS8), dns: newDNS(), clock: newClock(),
		wellKnown: map[string]func(http.ResponseWriter, *http.Request){}, wkFetches: map[string]int{}}
	e.cert = leaf(t, e.ca)
	e.def = startTLS(t, e.cert, "127.0.0.1:0", nil)
	e.other = startTLS(t, e.cert, "127.0.0.1:0", nil)
	e.wk = startTLS(t, e.cert, "127.0.0.1:0", func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.Host)
		e.mu.Lock()
		e.wkFetches[host]++
		h := e.wellKnown[host]
		e.mu.Unlock()
		if h == nil {
			http.NotFound(w, r)
			return
		}
		h(w, r)
	})
	var err error
	if e.key, err = event.GenerateSigningKey(); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) setWellKnown(host string, h func(w http.ResponseWriter, r *http.Request)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.wellKnown[host] = h
}

func (e *env) fetches(host string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.wkFetches[host]
}

func delegate(to string, header ...string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.Write([]byte(`{"m.server":"` + to + `"}`))
	}
}

func (e *env) client(mod ...func(*Options)) *Client {
	o := Options{ServerName: "origin.test", Key: e.key, AllowPrivate: true, ExtraCAs: []*x509.Certificate{e.ca.Cert},
		Resolver: e.dns, Now: e.clock.now, DefaultPort: e.def.port, WellKnownPort: e.wk.port, RequestTimeout: 5 * time.Second}
	for _, m := range mod {
		m(&o)
	}
	return New(o)
}

func port(n int) string { return strconv.Itoa(n) }

// checkSigned verifies a recorded request's X-Matrix header the way a
// receiving server does: parse, then the signature over what it received.
func checkSigned(t *testing.T, r seen, key *event.SigningKey, origin, destination string) {
	t.Helper()
	h, err := xmatrix.Parse(r.Auth)
	if err != nil {
		t.Fatalf("Authorization %q: %v", r.Auth, err)
	}
	if h.Origin != origin || h.Destination != destination || h.Key != key.ID {
		t.Fatalf("header %+v, want origin %s destination %s", h, origin, destination)
	}
	if err := xmatrix.Verify(h, r.Method, r.URI, destination, r.Body, key.PublicKey()); err != nil {
		t.Fatalf("signature of %s %s: %v", r.Method, r.URI, err)
	}
}
