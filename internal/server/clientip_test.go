package server

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	for _, c := range []struct {
		peer string
		xff  []string
		want string
	}{
		{"192.0.2.1:5000", nil, "192.0.2.1"},
		{"192.0.2.1:5000", []string{"203.0.113.9"}, "192.0.2.1"}, // untrusted peer: header ignored
		{"10.1.1.1:5000", nil, "10.1.1.1"},                       // trusted peer, no header: the peer
		{"10.1.1.1:5000", []string{"203.0.113.9"}, "203.0.113.9"},
		{"10.1.1.1:5000", []string{"6.6.6.6, 203.0.113.9"}, "203.0.113.9"},            // client-written entries ignored
		{"10.1.1.1:5000", []string{"6.6.6.6, 203.0.113.9, 10.2.2.2"}, "203.0.113.9"},  // trusted hops skipped
		{"10.1.1.1:5000", []string{"6.6.6.6", "203.0.113.9,10.2.2.2"}, "203.0.113.9"}, // several headers are one list
		{"10.1.1.1:5000", []string{"10.3.3.3, 10.2.2.2"}, "10.3.3.3"},                 // all trusted: the furthest
		{"10.1.1.1:5000", []string{"203.0.113.9:443"}, "203.0.113.9"},                 // with a port
		{"10.1.1.1:5000", []string{"[2001:db8::1]:443"}, "2001:db8::1"},               // IPv6 with a port
		{"10.1.1.1:5000", []string{"::ffff:203.0.113.9"}, "203.0.113.9"},              // IPv4-mapped
		{"10.1.1.1:5000", []string{"203.0.113.9, garbage"}, "10.1.1.1"},               // a bad hop: stop at the proxy
		{"10.1.1.1:5000", []string{"garbage, 203.0.113.9"}, "203.0.113.9"},            // garbage left of the client is never read
		{"[::1]:5000", []string{"2001:db8::7"}, "2001:db8::7"},
		{"[::ffff:10.1.1.1]:5000", []string{"203.0.113.9"}, "203.0.113.9"}, // mapped peer
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.peer
		for _, h := range c.xff {
			r.Header.Add("X-Forwarded-For", h)
		}
		var got string
		WithClientIP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = ClientIP(r) }), trusted).ServeHTTP(httptest.NewRecorder(), r)
		if got != c.want {
			t.Errorf("peer %s X-Forwarded-For %q: client %s, want %s", c.peer, c.xff, got, c.want)
		}
	}
	// Without the middleware, or with no trusted proxy, the peer.
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "10.1.1.1:5000"
	r.Header.Set("X-Forwarded-For", "203.0.113.9")
	if got := ClientIP(r); got != "10.1.1.1" {
		t.Fatalf("without middleware: %s", got)
	}
}
