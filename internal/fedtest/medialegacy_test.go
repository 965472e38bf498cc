package fedtest

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"conclave/internal/config"
	"conclave/internal/homeserver/hstest"
	"conclave/internal/tlsutil"
)

// A server from before the authenticated federation media endpoint (spec
// v1.11) still has its media fetched, through its old download endpoint, as
// Synapse falls back to; a server that refuses the media on the new
// endpoint (404 M_NOT_FOUND) is not asked again the old way.
func TestRemoteMediaFromServerWithoutFederationEndpoint(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	old := "localhost:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	var legacyAsked int
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/_matrix/federation/v1/media/download/gone"):
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(404)
			w.Write([]byte(`{"errcode":"M_NOT_FOUND","error":"no such media"}`))
		case strings.HasPrefix(r.URL.Path, "/_matrix/federation/v1/media/"):
			w.WriteHeader(400) // as Complement's fake servers answer it
			w.Write([]byte("unknown path"))
		case r.URL.Path == "/_matrix/media/v3/download/"+old+"/legacyfile" && r.URL.Query().Get("allow_remote") == "false":
			legacyAsked++
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Content-Disposition", `inline; filename="old.txt"`)
			w.Write([]byte("served the old way"))
		case strings.HasPrefix(r.URL.Path, "/_matrix/media/v3/download/"):
			legacyAsked++
			http.NotFound(w, r)
		default:
			http.NotFound(w, r)
		}
	}))
	srv.Listener.Close()
	srv.Listener = ln
	a := hstest.StartFederationEach(t, 1, func(_ int, c *config.Config) {
		c.FederationAllow = append(c.FederationAllow, old)
	})[0]
	cert, err := tlsutil.Issue(a.CA.Cert, a.CA.Key, old, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	defer srv.Close()

	alice := a.Register(t, "alice")
	r := a.Do(t, "GET", "/_matrix/client/v1/media/download/"+old+"/legacyfile", alice.Token, nil)
	if r.Status != 200 || string(r.Body) != "served the old way" {
		t.Fatalf("media of a server without the federation endpoint: %d %s", r.Status, r.Body)
	}
	if r := a.Do(t, "GET", "/_matrix/client/v1/media/download/"+old+"/gone", alice.Token, nil); r.Status != 404 {
		t.Fatalf("media the other server refused: %d %s", r.Status, r.Body)
	}
	if legacyAsked != 1 {
		t.Fatalf("the old endpoint was asked %d times, want once", legacyAsked)
	}
}
