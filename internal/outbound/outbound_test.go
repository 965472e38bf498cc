package outbound

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestForbidden(t *testing.T) {
	for _, s := range []string{
		"127.0.0.1", "127.255.0.9", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "169.254.169.254",
		"0.0.0.0", "0.1.2.3", "100.64.0.1", "224.0.0.1", "239.1.1.1", "255.255.255.255", "198.18.0.1", "192.0.2.5",
		"::", "::1", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "fec0::1", "2001:db8::1",
		"::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", // IPv4-mapped
		"64:ff9b::7f00:1", "64:ff9b::a00:1", "2002:7f00:1::1", "2002:c0a8:101::1", // NAT64, 6to4 to private
		"fe80::1%eth0",
	} {
		if !Forbidden(netip.MustParseAddr(s)) {
			t.Errorf("%s is not forbidden", s)
		}
	}
	for _, s := range []string{"1.1.1.1", "8.8.8.8", "172.32.0.1", "192.169.0.1", "100.128.0.1", "2606:4700::1111",
		"::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"} {
		if Forbidden(netip.MustParseAddr(s)) {
			t.Errorf("%s is forbidden", s)
		}
	}
	if !Forbidden(netip.Addr{}) {
		t.Error("the zero Addr is not forbidden")
	}
}

func TestAllowList(t *testing.T) {
	var open *AllowList
	if !open.Open() || !open.Allowed("any.example") || NewAllowList(nil).Check("x") != nil || !NewAllowList([]string{" ", ""}).Open() {
		t.Fatal("an empty list is not open")
	}
	a := NewAllowList([]string{"a.example", "Localhost:8449", " [::1]:8448 "})
	for _, ok := range []string{"a.example", "A.Example", "localhost:8449", "[::1]:8448"} {
		if !a.Allowed(ok) {
			t.Errorf("%s refused", ok)
		}
	}
	for _, no := range []string{"b.example", "localhost", "localhost:8448", "a.example:8448", "[::1]"} {
		err := a.Check(no)
		var nae *NotAllowedError
		if !errors.Is(err, ErrNotAllowed) || !errors.As(err, &nae) || nae.Server != no {
			t.Errorf("%s: %v", no, err)
		}
		if me := nae.MatrixError(); me.Status != 403 || me.Code != "M_FORBIDDEN" {
			t.Errorf("matrix error %+v", me)
		}
	}
}

// countingServer is an HTTPS test server on 127.0.0.1 that counts the
// connections it accepts.
func countingServer(t *testing.T, h http.Handler) (*httptest.Server, *atomic.Int32) {
	var n atomic.Int32
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			n.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, &n
}

type fakeResolver map[string][]netip.Addr

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := f[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func hello(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") }

// Loopback is refused unless allowed, whether the URL names the IP or a
// host resolving to it, and nothing is connected when refused.
func TestPrivateAddressesRefused(t *testing.T) {
	srv, accepts := countingServer(t, http.HandlerFunc(hello))
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	res := fakeResolver{
		"example.com":       {netip.MustParseAddr("127.0.0.1")},
		"mixed.example.com": {netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("::1")},
	}
	strict := New(Config{ExtraCAs: []*x509Cert{srv.Certificate()}, Resolver: res})
	for _, u := range []string{srv.URL, "https://example.com:" + itoa(port), "https://[::ffff:127.0.0.1]:" + itoa(port)} {
		_, err := strict.HTTP.Get(u)
		if !errors.Is(err, ErrForbiddenAddress) {
			t.Errorf("%s: %v", u, err)
		}
	}
	if _, err := strict.DialContext(context.Background(), "tcp", "mixed.example.com:"+itoa(port)); !errors.Is(err, ErrForbiddenAddress) {
		t.Errorf("every address private: %v", err)
	}
	// The Control hook refuses on its own, after any resolution.
	if _, err := strict.dialer.Dial("tcp", srv.Listener.Addr().String()); !errors.Is(err, ErrForbiddenAddress) {
		t.Errorf("control hook: %v", err)
	}
	if n := accepts.Load(); n != 0 {
		t.Fatalf("%d connections reached the server", n)
	}

	lax := New(Config{ExtraCAs: []*x509Cert{srv.Certificate()}, Resolver: res, AllowPrivate: true})
	defer lax.CloseIdleConnections()
	for _, u := range []string{srv.URL, "https://example.com:" + itoa(port)} {
		r, err := lax.HTTP.Get(u)
		if err != nil {
			t.Fatalf("%s allowed: %v", u, err)
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if string(b) != "hello" {
			t.Fatalf("body %q", b)
		}
	}
	if accepts.Load() == 0 {
		t.Fatal("no connection when allowed")
	}
}

// TLS is verified: a server whose CA is not trusted is refused, and a
// trusted certificate for another name too.
func TestTLSVerified(t *testing.T) {
	srv, _ := countingServer(t, http.HandlerFunc(hello))
	untrusted := New(Config{AllowPrivate: true})
	if _, err := untrusted.HTTP.Get(srv.URL); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("untrusted CA: %v", err)
	}
	port := itoa(srv.Listener.Addr().(*net.TCPAddr).Port)
	trusted := New(Config{AllowPrivate: true, ExtraCAs: []*x509Cert{srv.Certificate()}, Resolver: fakeResolver{"other.test": {netip.MustParseAddr("127.0.0.1")}}})
	if _, err := trusted.HTTP.Get("https://other.test:" + port); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("wrong name: %v", err)
	}
	conn, err := trusted.DialTLS(context.Background(), "127.0.0.1:"+port, "example.com")
	if err != nil {
		t.Fatalf("DialTLS for the certificate's name: %v", err)
	}
	conn.Close()
	if _, err := trusted.DialTLS(context.Background(), "127.0.0.1:"+port, "other.test"); err == nil {
		t.Fatal("DialTLS accepted a certificate for another name")
	}
}

func TestRedirectsOnlyWhenAllowed(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/a", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/b", http.StatusFound) })
	mux.HandleFunc("/b", hello)
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/loop", http.StatusFound) })
	srv, _ := countingServer(t, mux)
	c := New(Config{AllowPrivate: true, ExtraCAs: []*x509Cert{srv.Certificate()}})
	defer c.CloseIdleConnections()
	r, err := c.HTTP.Get(srv.URL + "/a")
	if err != nil || r.StatusCode != http.StatusFound {
		t.Fatalf("default client followed: %v %v", r, err)
	}
	r.Body.Close()
	var hops []string
	r, err = c.Redirecting(3, func(next *http.Request) error { hops = append(hops, next.URL.Path); return nil }).Get(srv.URL + "/a")
	if err != nil || r.StatusCode != 200 || len(hops) != 1 || hops[0] != "/b" {
		t.Fatalf("redirecting: %v %v %v", r, err, hops)
	}
	r.Body.Close()
	refuse := errors.New("no")
	if _, err := c.Redirecting(3, func(*http.Request) error { return refuse }).Get(srv.URL + "/a"); !errors.Is(err, refuse) {
		t.Fatalf("check not applied: %v", err)
	}
	if _, err := c.Redirecting(3, nil).Get(srv.URL + "/loop"); err == nil || !strings.Contains(err.Error(), "loop") {
		t.Fatalf("loop: %v", err)
	}
}

func TestTimeouts(t *testing.T) {
	release := make(chan struct{})
	srv, _ := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/body" {
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
		}
		<-release
	}))
	defer close(release)
	c := New(Config{AllowPrivate: true, ExtraCAs: []*x509Cert{srv.Certificate()}, ResponseHeaderTimeout: 100 * time.Millisecond, Timeout: 300 * time.Millisecond})
	defer c.CloseIdleConnections()
	if _, err := c.HTTP.Get(srv.URL + "/headers"); err == nil || !strings.Contains(err.Error(), "timeout awaiting response headers") {
		t.Fatalf("response header timeout: %v", err)
	}
	r, err := c.HTTP.Get(srv.URL + "/body")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	if _, err := io.ReadAll(r.Body); err == nil {
		t.Fatal("whole-request timeout did not cut the body")
	}
}

func TestLimitBody(t *testing.T) {
	for _, c := range []struct {
		size, limit int
		ok          bool
	}{{0, 0, true}, {10, 10, true}, {11, 10, false}, {1 << 20, 1<<20 - 1, false}, {5, 100, true}} {
		data := bytes.Repeat([]byte("x"), c.size)
		b, err := io.ReadAll(LimitBody(io.NopCloser(bytes.NewReader(data)), int64(c.limit)))
		if c.ok != (err == nil) || c.ok && len(b) != c.size || !c.ok && !errors.Is(err, ErrTooLarge) {
			t.Errorf("size %d limit %d: %d bytes, %v", c.size, c.limit, len(b), err)
		}
		b, err = ReadBody(bytes.NewReader(data), int64(c.limit))
		if c.ok != (err == nil) || c.ok && len(b) != c.size || !c.ok && !errors.Is(err, ErrTooLarge) {
			t.Errorf("ReadBody size %d limit %d: %d bytes, %v", c.size, c.limit, len(b), err)
		}
	}
}

type x509Cert = x509.Certificate

func itoa(n int) string { return strconv.Itoa(n) }
