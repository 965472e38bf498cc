package webclient_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"

	"conclave/internal/config"
	"conclave/internal/homeserver/hstest"
	"conclave/internal/webclient"
)

func get(t *testing.T, url string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	// No transparent decompression: the test looks at what was sent.
	res, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res, body
}

// The client is served at / with the strict headers issue 13 names, its
// hashed assets cached for good, the wasm with the type instantiateStreaming
// requires, and every Matrix namespace left Matrix-shaped.
func TestServedAtRootWithStrictHeaders(t *testing.T) {
	s := hstest.Start(t)

	res, body := get(t, s.URL+"/")
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	strict := func(what string, h http.Header) {
		t.Helper()
		csp := h.Get("Content-Security-Policy")
		if csp != webclient.ContentSecurityPolicy || !strings.Contains(csp, "script-src 'self' 'wasm-unsafe-eval';") ||
			!strings.Contains(csp, "default-src 'self';") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: Content-Security-Policy %q", what, csp)
		}
		if h.Get("X-Frame-Options") != "DENY" || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: X-Frame-Options %q, X-Content-Type-Options %q", what, h.Get("X-Frame-Options"), h.Get("X-Content-Type-Options"))
		}
		// Its popups (the SSO fallback page) keep their opener.
		if h.Get("Cross-Origin-Opener-Policy") != "same-origin-allow-popups" {
			t.Errorf("%s: Cross-Origin-Opener-Policy %q", what, h.Get("Cross-Origin-Opener-Policy"))
		}
	}
	strict("/", res.Header)
	if cc := res.Header.Get("Cache-Control"); cc != "no-cache" {
		t.Errorf("index Cache-Control %q, want no-cache", cc)
	}

	// Every asset index.html names is served, hashed and immutable.
	refs := regexp.MustCompile(`(?:src|href)="(assets/[^"]+)"`).FindAllStringSubmatch(string(body), -1)
	if len(refs) < 2 {
		t.Fatalf("index.html names %d assets:\n%s", len(refs), body)
	}
	for _, ref := range refs {
		res, _ := get(t, s.URL+"/"+ref[1])
		if res.StatusCode != 200 {
			t.Fatalf("%s: %d", ref[1], res.StatusCode)
		}
		strict(ref[1], res.Header)
		if cc := res.Header.Get("Cache-Control"); cc != "public, max-age=31536000, immutable" {
			t.Errorf("%s Cache-Control %q", ref[1], cc)
		}
	}

	// The JavaScript names the wasm it loads; it is served as application/wasm.
	app := regexp.MustCompile(`assets/app-[^"]+\.js`).FindString(string(body))
	_, js := get(t, s.URL+"/"+app)
	wasm := regexp.MustCompile(`crypto-[0-9a-f]+\.wasm`).FindString(string(js))
	if wasm == "" {
		t.Fatalf("%s names no crypto wasm", app)
	}
	res, raw := get(t, s.URL+"/assets/"+wasm)
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/wasm" || !bytes.HasPrefix(raw, []byte("\x00asm")) {
		t.Fatalf("wasm: %d %q % x", res.StatusCode, res.Header.Get("Content-Type"), raw[:min(4, len(raw))])
	}

	// Compressed for a browser that accepts gzip, with its own ETag.
	res, gz := get(t, s.URL+"/"+app, "Accept-Encoding", "gzip, br")
	if res.Header.Get("Content-Encoding") != "gzip" || res.Header.Get("ETag") == "" {
		t.Fatalf("gzip: Content-Encoding %q ETag %q", res.Header.Get("Content-Encoding"), res.Header.Get("ETag"))
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	if plain, _ := io.ReadAll(zr); !bytes.Equal(plain, js) {
		t.Fatal("gzipped JavaScript differs from the plain one")
	}
	res, _ = get(t, s.URL+"/"+app, "If-None-Match", res.Header.Get("ETag"), "Accept-Encoding", "gzip")
	if res.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: %d, want 304", res.StatusCode)
	}

	// The APIs keep their Matrix answers.
	for _, c := range []struct {
		method, path string
		status       int
		errcode      string
	}{
		{"GET", "/_matrix/client/versions", 200, ""},
		{"GET", "/_matrix/client/v3/no/such/endpoint", 404, "M_UNRECOGNIZED"},
		{"GET", "/_matrix", 404, "M_UNRECOGNIZED"},
		{"GET", "/.well-known/matrix/nothing", 404, "M_UNRECOGNIZED"},
		{"GET", "/_synapse/admin/v1/nothing", 404, "M_UNRECOGNIZED"},
		{"GET", "/_synapse/admin/v1/register", 200, ""},
		{"GET", "/no-such-page", 404, "M_UNRECOGNIZED"},
		{"GET", "/assets/no-such-file.js", 404, "M_UNRECOGNIZED"},
		{"POST", "/", 404, "M_UNRECOGNIZED"},
	} {
		r := s.Do(t, c.method, c.path, "", nil)
		if r.Status != c.status || r.Errcode() != c.errcode {
			t.Errorf("%s %s: %d %s, want %d %s", c.method, c.path, r.Status, r.Body, c.status, c.errcode)
		}
	}
}

// --web-client=false: / is an unknown path like any other.
func TestWebClientOff(t *testing.T) {
	s := hstest.Start(t, func(c *config.Config) { c.WebClient = false })
	r := s.Do(t, "GET", "/", "", nil)
	if r.Status != 404 || r.Errcode() != "M_UNRECOGNIZED" {
		t.Fatalf("GET / with the web client off: %d %s", r.Status, r.Body)
	}
}

// The switch is on by default and set from a flag, the environment or YAML.
func TestWebClientSetting(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	cfg, err := config.Load(nil, env(nil))
	if err != nil || !cfg.WebClient {
		t.Fatalf("default: %v %v", cfg.WebClient, err)
	}
	cfg, err = config.Load([]string{"--web-client=false"}, env(nil))
	if err != nil || cfg.WebClient {
		t.Fatalf("--web-client=false: %v %v", cfg.WebClient, err)
	}
	cfg, err = config.Load(nil, env(map[string]string{"CONCLAVE_WEB_CLIENT": "false"}))
	if err != nil || cfg.WebClient {
		t.Fatalf("CONCLAVE_WEB_CLIENT=false: %v %v", cfg.WebClient, err)
	}
	file := t.TempDir() + "/conclave.yaml"
	if err := os.WriteFile(file, []byte("web_client: false\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err = config.Load([]string{"--config", file}, env(nil))
	if err != nil || cfg.WebClient {
		t.Fatalf("web_client: false in YAML: %v %v", cfg.WebClient, err)
	}
}
