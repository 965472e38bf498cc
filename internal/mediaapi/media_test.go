package mediaapi_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"conclave/internal/config"
	"conclave/internal/homeserver/hstest"
	"conclave/internal/store"
)

func TestUploadDownloadRoundTrip(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	data := []byte("hello media\n")
	id := mustUpload(t, s, alice.Token, "text/plain; charset=utf-8", "notes.txt", data)

	r := do(t, s, "GET", dl(id), alice.Token, nil)
	if r.Status != 200 || !bytes.Equal(r.Body, data) {
		t.Fatalf("download: %d %q", r.Status, r.Body)
	}
	if got := r.Header.Get("Content-Type"); got != "text/plain; charset=utf-8" {
		t.Errorf("Content-Type %q", got)
	}
	if got := r.Header.Get("Content-Disposition"); got != "inline; filename=notes.txt" {
		t.Errorf("Content-Disposition %q", got)
	}
	// The file name in the path overrides the stored one.
	r = do(t, s, "GET", dl(id)+"/other.txt", alice.Token, nil)
	if r.Status != 200 || r.Header.Get("Content-Disposition") != "inline; filename=other.txt" {
		t.Fatalf("download with name: %d %q", r.Status, r.Header.Get("Content-Disposition"))
	}
	// Anyone authenticated may download; the legacy endpoints (no freeze)
	// serve without a token, under v3 and r0.
	bob := s.CreateUser(t, "bob")
	for _, p := range []string{dl(id), legacyDL(id), "/_matrix/media/r0/download/localhost/" + id} {
		tok := bob.Token
		if !strings.HasPrefix(p, "/_matrix/client") {
			tok = ""
		}
		if r := do(t, s, "GET", p, tok, nil); r.Status != 200 || !bytes.Equal(r.Body, data) {
			t.Fatalf("GET %s: %d %s", p, r.Status, r.Body)
		}
	}
	// No Content-Type and no filename: application/octet-stream, attachment.
	id2 := mustUpload(t, s, alice.Token, "", "", []byte{0, 1, 2})
	r = do(t, s, "GET", dl(id2), alice.Token, nil)
	if r.Header.Get("Content-Type") != "application/octet-stream" || r.Header.Get("Content-Disposition") != "attachment" {
		t.Fatalf("defaults: %q %q", r.Header.Get("Content-Type"), r.Header.Get("Content-Disposition"))
	}
	// An empty upload is content too.
	id3 := mustUpload(t, s, alice.Token, "text/plain", "empty", nil)
	if r := do(t, s, "GET", dl(id3), alice.Token, nil); r.Status != 200 || len(r.Body) != 0 {
		t.Fatalf("empty: %d %q", r.Status, r.Body)
	}
	// Uploading needs a token.
	wantErr(t, upload(t, s, "", "text/plain", "", data), 401, "M_MISSING_TOKEN")
	wantErr(t, upload(t, s, "nope", "text/plain", "", data), 401, "M_UNKNOWN_TOKEN")
	// A malformed Content-Type is refused.
	wantErr(t, upload(t, s, alice.Token, "not a type", "", data), 400, "M_INVALID_PARAM")
}

func TestConfigEndpoint(t *testing.T) {
	s := hstest.Start(t, func(c *config.Config) { c.MaxUploadBytes = 12345 })
	alice := s.CreateUser(t, "alice")
	for _, p := range []string{"/_matrix/client/v1/media/config", "/_matrix/media/v3/config", "/_matrix/media/r0/config"} {
		r := do(t, s, "GET", p, alice.Token, nil)
		if r.Status != 200 || r.JSON["m.upload.size"] != float64(12345) {
			t.Fatalf("%s: %d %s", p, r.Status, r.Body)
		}
		wantErr(t, do(t, s, "GET", p, "", nil), 401, "M_MISSING_TOKEN")
	}
}

func TestDedupAndDelete(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	admin := adminUser(t, s, "admin")
	data := bytes.Repeat([]byte("same bytes "), 1000)
	id1 := mustUpload(t, s, alice.Token, "application/octet-stream", "a.bin", data)
	id2 := mustUpload(t, s, alice.Token, "text/plain", "b.txt", data)
	if id1 == id2 {
		t.Fatal("two uploads got one media ID")
	}
	files := contentFiles(t, s)
	sum := sha256.Sum256(data)
	if len(files) != 1 || files[0] != hex.EncodeToString(sum[:]) {
		t.Fatalf("want exactly the one file named by its SHA-256, got %v", files)
	}
	if len(tmpFiles(t, s)) != 0 {
		t.Fatal("staging files left behind")
	}
	// Each upload keeps its own metadata.
	if r := do(t, s, "GET", dl(id2), alice.Token, nil); r.Header.Get("Content-Type") != "text/plain" {
		t.Fatalf("second upload's type: %q", r.Header.Get("Content-Type"))
	}
	// Deleting one keeps the shared file; deleting both removes it.
	r := do(t, s, "DELETE", "/_synapse/admin/v1/media/localhost/"+id1, admin.Token, nil)
	if r.Status != 200 || r.JSON["total"] != float64(1) {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	wantErr(t, do(t, s, "GET", dl(id1), alice.Token, nil), 404, "M_NOT_FOUND")
	if r := do(t, s, "GET", dl(id2), alice.Token, nil); r.Status != 200 || !bytes.Equal(r.Body, data) {
		t.Fatalf("the other upload must survive: %d", r.Status)
	}
	if len(contentFiles(t, s)) != 1 {
		t.Fatal("shared file deleted while still referenced")
	}
	do(t, s, "DELETE", "/_synapse/admin/v1/media/localhost/"+id2, admin.Token, nil)
	if f := contentFiles(t, s); len(f) != 0 {
		t.Fatalf("unreferenced file kept: %v", f)
	}
	wantErr(t, do(t, s, "DELETE", "/_synapse/admin/v1/media/localhost/"+id2, admin.Token, nil), 404, "M_NOT_FOUND")
}

func TestTooLarge(t *testing.T) {
	s := hstest.Start(t, func(c *config.Config) { c.MaxUploadBytes = 1000 })
	alice := s.CreateUser(t, "alice")
	// Exactly the limit is fine.
	mustUpload(t, s, alice.Token, "application/octet-stream", "", make([]byte, 1000))
	before := contentFiles(t, s)
	// Declared length over the limit.
	wantErr(t, upload(t, s, alice.Token, "application/octet-stream", "", make([]byte, 1001)), 413, "M_TOO_LARGE")
	// Chunked body (no length) that turns out too large.
	big := io.MultiReader(bytes.NewReader(make([]byte, 600)), bytes.NewReader(make([]byte, 600)))
	wantErr(t, do(t, s, "POST", "/_matrix/media/v3/upload", alice.Token, big, "Content-Type", "application/octet-stream"), 413, "M_TOO_LARGE")
	// Same through the asynchronous PUT.
	c := do(t, s, "POST", "/_matrix/media/v1/create", alice.Token, nil)
	id := strings.TrimPrefix(c.str("content_uri"), "mxc://localhost/")
	wantErr(t, do(t, s, "PUT", "/_matrix/media/v3/upload/localhost/"+id, alice.Token, bytes.NewReader(make([]byte, 5000))), 413, "M_TOO_LARGE")
	wantErr(t, do(t, s, "GET", dl(id)+"?timeout_ms=0", alice.Token, nil), 504, "M_NOT_YET_UPLOADED")
	if after := contentFiles(t, s); len(after) != len(before) {
		t.Fatalf("oversized uploads stored something: %v", after)
	}
	if n := len(tmpFiles(t, s)); n != 0 {
		t.Fatalf("%d staging files left", n)
	}
}

func TestUnknownAndInvalidIDs(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	mustUpload(t, s, alice.Token, "text/plain", "", []byte("x"))
	bad := []string{
		"doesNotExist",
		"..%2F..",
		"..%2F..%2Fconclave.db",
		"%2E%2E",
		"a.b",
		"a%00b",
		"%C3%A9t%C3%A9",
		"a%20b",
		strings.Repeat("a", 256),
		strings.Repeat("a", 5000),
	}
	for _, id := range bad {
		for _, p := range []string{
			dl(id), dl(id) + "/f.txt", "/_matrix/client/v1/media/thumbnail/localhost/" + id + "?width=32&height=32",
			legacyDL(id), "/_matrix/media/v3/thumbnail/localhost/" + id + "?width=32&height=32",
		} {
			r := do(t, s, "GET", p, alice.Token, nil)
			if r.Status != 404 || (r.errcode() != "M_NOT_FOUND" && r.errcode() != "M_UNRECOGNIZED") {
				t.Errorf("GET %s: %d %s", p, r.Status, r.Body)
			}
		}
	}
	// Remote server names: no federation yet.
	wantErr(t, do(t, s, "GET", "/_matrix/client/v1/media/download/other.example/abc", alice.Token, nil), 404, "M_NOT_FOUND")
	wantErr(t, do(t, s, "GET", "/_matrix/media/v3/download/other.example/abc", "", nil), 404, "M_NOT_FOUND")
	// The authenticated endpoints need a token.
	wantErr(t, do(t, s, "GET", dl("abc"), "", nil), 401, "M_MISSING_TOKEN")
	wantErr(t, do(t, s, "GET", "/_matrix/client/v1/media/thumbnail/localhost/abc?width=1&height=1", "", nil), 401, "M_MISSING_TOKEN")
	// Bad timeout_ms.
	wantErr(t, do(t, s, "GET", dl("abc")+"?timeout_ms=-1", alice.Token, nil), 400, "M_INVALID_PARAM")
	// URL previews are off: an unknown endpoint.
	wantErr(t, do(t, s, "GET", "/_matrix/client/v1/media/preview_url?url=https://example.org", alice.Token, nil), 404, "M_UNRECOGNIZED")
}

func TestLegacyFreeze(t *testing.T) {
	dir := t.TempDir()
	cfg := func(freeze bool) hstest.Option {
		return func(c *config.Config) { c.DataDir = dir; c.LegacyMediaFreeze = freeze }
	}
	s := hstest.Start(t, cfg(false))
	alice := s.CreateUser(t, "alice")
	old := mustUpload(t, s, alice.Token, "image/png", "old.png", pngBytes(t, 40, 40))
	if r := do(t, s, "GET", legacyDL(old), "", nil); r.Status != 200 {
		t.Fatalf("legacy download without freeze: %d", r.Status)
	}
	s.Stop()

	s = hstest.Start(t, cfg(true))
	fresh := mustUpload(t, s, alice.Token, "image/png", "new.png", pngBytes(t, 40, 40))
	// Media from before the freeze stays available unauthenticated.
	if r := do(t, s, "GET", legacyDL(old), "", nil); r.Status != 200 {
		t.Fatalf("pre-freeze media on the legacy endpoint: %d %s", r.Status, r.Body)
	}
	// Media uploaded under the freeze: 404 on the deprecated endpoints, even
	// with a token, and served normally on the authenticated ones.
	for _, p := range []string{legacyDL(fresh), "/_matrix/media/r0/download/localhost/" + fresh, "/_matrix/media/v3/thumbnail/localhost/" + fresh + "?width=32&height=32"} {
		wantErr(t, do(t, s, "GET", p, "", nil), 404, "M_NOT_FOUND")
		wantErr(t, do(t, s, "GET", p, alice.Token, nil), 404, "M_NOT_FOUND")
	}
	if r := do(t, s, "GET", dl(fresh), alice.Token, nil); r.Status != 200 {
		t.Fatalf("authenticated download under freeze: %d", r.Status)
	}
	if r := do(t, s, "GET", "/_matrix/client/v1/media/thumbnail/localhost/"+fresh+"?width=32&height=32", alice.Token, nil); r.Status != 200 {
		t.Fatalf("authenticated thumbnail under freeze: %d %s", r.Status, r.Body)
	}
}

func TestAsyncUpload(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	before := time.Now().UnixMilli()
	c := do(t, s, "POST", "/_matrix/media/v1/create", alice.Token, nil)
	if c.Status != 200 {
		t.Fatalf("create: %d %s", c.Status, c.Body)
	}
	id := strings.TrimPrefix(c.str("content_uri"), "mxc://localhost/")
	if exp, _ := c.JSON["unused_expires_at"].(float64); int64(exp) <= before {
		t.Fatalf("unused_expires_at %v", c.JSON["unused_expires_at"])
	}
	put := "/_matrix/media/v3/upload/localhost/" + id
	wantErr(t, do(t, s, "POST", "/_matrix/media/v1/create", "", nil), 401, "M_MISSING_TOKEN")

	// Not uploaded yet.
	wantErr(t, do(t, s, "GET", dl(id)+"?timeout_ms=0", alice.Token, nil), 504, "M_NOT_YET_UPLOADED")
	wantErr(t, do(t, s, "GET", "/_matrix/client/v1/media/thumbnail/localhost/"+id+"?width=32&height=32&timeout_ms=0", alice.Token, nil), 504, "M_NOT_YET_UPLOADED")
	// Only the creator may upload.
	wantErr(t, do(t, s, "PUT", put, bob.Token, strings.NewReader("mine")), 403, "M_FORBIDDEN")
	wantErr(t, do(t, s, "PUT", put, "", strings.NewReader("mine")), 401, "M_MISSING_TOKEN")
	// Unknown IDs and other servers.
	wantErr(t, do(t, s, "PUT", "/_matrix/media/v3/upload/localhost/unknownID", alice.Token, strings.NewReader("x")), 404, "M_NOT_FOUND")
	wantErr(t, do(t, s, "PUT", "/_matrix/media/v3/upload/other.example/"+id, alice.Token, strings.NewReader("x")), 404, "M_NOT_FOUND")

	// A download waiting for the content gets it once it is uploaded.
	got := make(chan *resp, 1)
	go func() { got <- do(t, s, "GET", dl(id)+"?timeout_ms=30000", bob.Token, nil) }()
	if r := do(t, s, "PUT", put+"?filename=late.txt", alice.Token, strings.NewReader("content at last"), "Content-Type", "text/plain"); r.Status != 200 || string(r.Body) != "{}" {
		t.Fatalf("PUT: %d %s", r.Status, r.Body)
	}
	r := <-got
	if r.Status != 200 || string(r.Body) != "content at last" || r.Header.Get("Content-Disposition") != "inline; filename=late.txt" {
		t.Fatalf("waiting download: %d %q %q", r.Status, r.Body, r.Header.Get("Content-Disposition"))
	}
	// Once only.
	wantErr(t, do(t, s, "PUT", put, alice.Token, strings.NewReader("again")), 409, "M_CANNOT_OVERWRITE_MEDIA")
	wantErr(t, do(t, s, "PUT", put, bob.Token, strings.NewReader("again")), 403, "M_FORBIDDEN")

	// Expired reservations: upload and download answer 404.
	s.HS.Media.SetUnusedExpiry(0)
	c = do(t, s, "POST", "/_matrix/media/v1/create", alice.Token, nil)
	id2 := strings.TrimPrefix(c.str("content_uri"), "mxc://localhost/")
	wantErr(t, do(t, s, "PUT", "/_matrix/media/v3/upload/localhost/"+id2, alice.Token, strings.NewReader("late")), 404, "M_NOT_FOUND")
	wantErr(t, do(t, s, "GET", dl(id2)+"?timeout_ms=0", alice.Token, nil), 404, "M_NOT_FOUND")

	// Too many pending reservations: 429.
	s.HS.Media.SetUnusedExpiry(time.Hour)
	var last *resp
	for i := 0; i < 20; i++ {
		last = do(t, s, "POST", "/_matrix/media/v1/create", bob.Token, nil)
		if last.Status != 200 {
			break
		}
	}
	wantErr(t, last, 429, "M_LIMIT_EXCEEDED")
}

func TestRateLimit(t *testing.T) {
	s := hstest.Start(t, func(c *config.Config) { c.RateLimits = true })
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	var r *resp
	for i := 0; i < 200; i++ {
		if r = upload(t, s, alice.Token, "text/plain", "", []byte("x")); r.Status != 200 {
			break
		}
	}
	wantErr(t, r, 429, "M_LIMIT_EXCEEDED")
	if ms, _ := r.JSON["retry_after_ms"].(float64); ms <= 0 {
		t.Fatalf("retry_after_ms %v", r.JSON["retry_after_ms"])
	}
	if r.Header.Get("Retry-After") == "" {
		t.Fatal("no Retry-After header")
	}
	// The limit is per user.
	if r := upload(t, s, bob.Token, "text/plain", "", []byte("x")); r.Status != 200 {
		t.Fatalf("bob limited by alice's uploads: %d", r.Status)
	}
}

func TestSafeServingHeaders(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	cases := []struct {
		ct, name, disp string
	}{
		{"text/html", "page.html", "attachment; filename=page.html"},
		{"text/html; charset=utf-8", "", "attachment"},
		{"image/svg+xml", "x.svg", "attachment; filename=x.svg"},
		{"application/javascript", "x.js", "attachment; filename=x.js"},
		{"image/png", "a b.png", "inline; filename*=utf-8''a%20b.png"},
		{"audio/ogg", "é\"; x=.ogg", "inline; filename*=utf-8''%C3%A9%22%3B%20x%3D.ogg"},
		{"video/mp4", "50%.mp4", "inline; filename*=utf-8''50%25.mp4"},
	}
	for _, c := range cases {
		id := mustUpload(t, s, alice.Token, c.ct, c.name, []byte("<script>alert(1)</script>"))
		for _, p := range []string{dl(id), legacyDL(id)} {
			r := do(t, s, "GET", p, alice.Token, nil)
			h := r.Header
			if r.Status != 200 || h.Get("Content-Type") != c.ct || h.Get("Content-Disposition") != c.disp {
				t.Errorf("%s %q: %d type %q disposition %q, want %q", c.ct, c.name, r.Status, h.Get("Content-Type"), h.Get("Content-Disposition"), c.disp)
			}
			csp := h.Get("Content-Security-Policy")
			for _, d := range []string{"sandbox", "default-src 'none'", "script-src 'none'", "plugin-types application/pdf", "style-src 'unsafe-inline'", "object-src 'self'"} {
				if !strings.Contains(csp, d) {
					t.Errorf("CSP %q lacks %q", csp, d)
				}
			}
			if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Cross-Origin-Resource-Policy") != "cross-origin" {
				t.Errorf("headers: %v", h)
			}
			if h.Get("Cache-Control") == "" || h.Get("ETag") == "" || h.Get("Accept-Ranges") != "bytes" {
				t.Errorf("caching headers: %v", h)
			}
		}
	}
	if !strings.Contains(do(t, s, "GET", dl(mustUpload(t, s, alice.Token, "image/png", "", []byte("x"))), alice.Token, nil).Header.Get("Cache-Control"), "private") {
		t.Error("authenticated media must not be cacheable by shared caches")
	}
}

func TestRangeAndConditional(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	data := []byte("0123456789abcdefghij")
	id := mustUpload(t, s, alice.Token, "application/octet-stream", "", data)
	r := do(t, s, "GET", dl(id), alice.Token, nil, "Range", "bytes=2-5")
	if r.Status != 206 || string(r.Body) != "2345" || r.Header.Get("Content-Range") != "bytes 2-5/20" {
		t.Fatalf("range: %d %q %q", r.Status, r.Body, r.Header.Get("Content-Range"))
	}
	r = do(t, s, "GET", dl(id), alice.Token, nil, "Range", "bytes=-3")
	if r.Status != 206 || string(r.Body) != "hij" {
		t.Fatalf("suffix range: %d %q", r.Status, r.Body)
	}
	if r := do(t, s, "GET", dl(id), alice.Token, nil, "Range", "bytes=50-60"); r.Status != 416 {
		t.Fatalf("unsatisfiable range: %d", r.Status)
	}
	etag := do(t, s, "GET", dl(id), alice.Token, nil).Header.Get("ETag")
	if r := do(t, s, "GET", dl(id), alice.Token, nil, "If-None-Match", etag); r.Status != 304 {
		t.Fatalf("If-None-Match: %d", r.Status)
	}
	if r := do(t, s, "HEAD", dl(id), alice.Token, nil); r.Status != 200 || r.Header.Get("Content-Length") != "20" {
		t.Fatalf("HEAD: %d %v", r.Status, r.Header)
	}
}

func TestQuarantineAndAdmin(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	admin := adminUser(t, s, "admin")
	id := mustUpload(t, s, alice.Token, "image/png", "p.png", pngBytes(t, 50, 50))
	thumb := "/_matrix/client/v1/media/thumbnail/localhost/" + id + "?width=32&height=32&method=crop"
	if r := do(t, s, "GET", thumb, alice.Token, nil); r.Status != 200 {
		t.Fatalf("thumbnail: %d %s", r.Status, r.Body)
	}
	q := "/_synapse/admin/v1/media/quarantine/localhost/" + id
	wantErr(t, do(t, s, "POST", q, alice.Token, nil), 403, "M_FORBIDDEN")
	wantErr(t, do(t, s, "POST", q, "", nil), 401, "M_MISSING_TOKEN")
	wantErr(t, do(t, s, "DELETE", "/_synapse/admin/v1/media/localhost/"+id, alice.Token, nil), 403, "M_FORBIDDEN")
	if r := do(t, s, "GET", dl(id), alice.Token, nil); r.Status != 200 {
		t.Fatal("non-admin calls changed something")
	}
	if r := do(t, s, "POST", q, admin.Token, nil); r.Status != 200 {
		t.Fatalf("quarantine: %d %s", r.Status, r.Body)
	}
	for _, p := range []string{dl(id), legacyDL(id), thumb} {
		wantErr(t, do(t, s, "GET", p, alice.Token, nil), 404, "M_NOT_FOUND")
	}
	wantErr(t, do(t, s, "POST", "/_synapse/admin/v1/media/quarantine/localhost/unknown", admin.Token, nil), 404, "M_NOT_FOUND")
	if r := do(t, s, "POST", "/_synapse/admin/v1/media/unquarantine/localhost/"+id, admin.Token, nil); r.Status != 200 {
		t.Fatalf("unquarantine: %d", r.Status)
	}
	if r := do(t, s, "GET", dl(id), alice.Token, nil); r.Status != 200 {
		t.Fatalf("after unquarantine: %d", r.Status)
	}
	// Delete removes the original and thumbnail files.
	if n := len(contentFiles(t, s)); n != 2 {
		t.Fatalf("want original + thumbnail files, got %d", n)
	}
	r := do(t, s, "DELETE", "/_synapse/admin/v1/media/localhost/"+id, admin.Token, nil)
	if r.Status != 200 {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	if ids, _ := r.JSON["deleted_media"].([]any); len(ids) != 1 || ids[0] != id {
		t.Fatalf("deleted_media %v", r.JSON["deleted_media"])
	}
	if n := len(contentFiles(t, s)); n != 0 {
		t.Fatalf("%d files left after delete", n)
	}
	wantErr(t, do(t, s, "GET", thumb, alice.Token, nil), 404, "M_NOT_FOUND")
	wantErr(t, do(t, s, "DELETE", "/_synapse/admin/v1/media/other.example/"+id, admin.Token, nil), 400, "M_UNKNOWN")
}

func TestOrphanCleanup(t *testing.T) {
	s := hstest.Start(t)
	s.HS.Media.WaitStartupCleanup()
	alice := s.CreateUser(t, "alice")
	data := []byte("kept")
	id := mustUpload(t, s, alice.Token, "text/plain", "", data)
	// A file no row references, as a crash between rename and commit leaves.
	orphan := sha256.Sum256([]byte("orphan"))
	h := hex.EncodeToString(orphan[:])
	dir := filepath.Join(s.Config.MediaPath(), "content", h[:2], h[2:4])
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, h), []byte("orphan"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Stray files that are not content are left alone.
	if err := os.WriteFile(filepath.Join(s.Config.MediaPath(), "content", "README"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	n, err := s.HS.Media.CleanupOrphans(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("cleanup: removed %d, err %v", n, err)
	}
	if _, err := os.Stat(filepath.Join(dir, h)); !os.IsNotExist(err) {
		t.Fatal("orphan still there")
	}
	if r := do(t, s, "GET", dl(id), alice.Token, nil); r.Status != 200 || !bytes.Equal(r.Body, data) {
		t.Fatalf("referenced content damaged: %d", r.Status)
	}
	if n, _ := s.HS.Media.CleanupOrphans(context.Background()); n != 0 {
		t.Fatalf("second cleanup removed %d", n)
	}
	// Rows record the hash and scan status.
	m, err := s.HS.Store.GetMedia(context.Background(), id)
	sum := sha256.Sum256(data)
	if err != nil || m.SHA256 != hex.EncodeToString(sum[:]) || m.Size != 4 || m.ScanStatus != store.ScanNone || m.UserID != alice.UserID {
		t.Fatalf("row %+v %v", m, err)
	}
}

func TestUploadToMissingMediaDirFailsCleanly(t *testing.T) {
	// Requests with methods a path does not serve get 405 M_UNRECOGNIZED.
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	r := do(t, s, "DELETE", "/_matrix/media/v3/upload", alice.Token, nil)
	if r.Status != http.StatusMethodNotAllowed || r.errcode() != "M_UNRECOGNIZED" {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
}

// TestTooLargeBodyReadable: an upload far over the limit gets a 413
// M_TOO_LARGE the client can read, whether it reads the response while
// sending (Go's client) or only after sending everything (as browsers do):
// the server reads the rest of the body (up to a bound) instead of closing
// the connection under the client while it still sends.
func TestTooLargeBodyReadable(t *testing.T) {
	s := hstest.Start(t, func(c *config.Config) { c.MaxUploadBytes = 1000 })
	alice := s.CreateUser(t, "alice")
	body := make([]byte, 8<<20)
	wantErr(t, do(t, s, "POST", "/_matrix/media/v3/upload", alice.Token, bytes.NewReader(body), "Content-Type", "application/octet-stream"), 413, "M_TOO_LARGE")
	// Chunked, no declared length.
	wantErr(t, do(t, s, "POST", "/_matrix/media/v3/upload", alice.Token, io.MultiReader(bytes.NewReader(body)), "Content-Type", "application/octet-stream"), 413, "M_TOO_LARGE")

	// A client that writes the whole request before reading anything.
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	head := fmt.Sprintf("POST /_matrix/media/v3/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", alice.Token, len(body))
	if _, err := conn.Write(append([]byte(head), body...)); err != nil {
		t.Fatalf("sending the body: %v (the server closed the connection before reading it)", err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	defer res.Body.Close()
	var e struct{ Errcode string }
	if err := json.NewDecoder(res.Body).Decode(&e); err != nil || res.StatusCode != 413 || e.Errcode != "M_TOO_LARGE" {
		t.Fatalf("got %d %q (%v)", res.StatusCode, e.Errcode, err)
	}
}
