// Package webclient owns the web client served at / (issue 13): the assets
// built from web/ by `make web` (matrix-js-sdk with its Rust crypto), embedded
// in the binary so that running the server needs no Node, and the strict
// headers they are served with.
//
// The assets are committed in dist/ (the crypto's .wasm included: an npm
// artefact pinned by web/package-lock.json); `make web-check` rebuilds them
// into a temporary directory and fails when they differ from what is
// committed.
package webclient

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"
)

//go:embed dist
var dist embed.FS

// ContentSecurityPolicy lets the page load code, styles, images and
// connections from its own origin only. 'wasm-unsafe-eval' lets it compile
// the crypto's WebAssembly (and nothing else: no eval of JavaScript); blob:
// images are attachments decrypted in the page, which exist only in its
// memory. No plugins, no <base>, no framing, forms post to the origin only.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; " +
	"img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self'; font-src 'self'; worker-src 'self'; " +
	"object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"

// Handler serves the web client: / is index.html, /assets/NAME the built
// files, whose names carry a hash of their content (cached for a year,
// immutable); index.html is revalidated on every load so a new build is
// picked up. Anything else is left to notFound.
type Handler struct {
	notFound http.Handler
	files    map[string]*asset
}

type asset struct {
	name      string
	body      []byte
	ctype     string
	immutable bool
	etag      string
	gzOnce    sync.Once
	gz        []byte // nil when compressing does not pay
}

// New returns the handler of the embedded web client, or nil when the
// binary was built without one (dist/index.html missing).
func New(notFound http.Handler) *Handler {
	h := &Handler{notFound: notFound, files: map[string]*asset{}}
	err := fs.WalkDir(dist, "dist", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := dist.ReadFile(p)
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(p, "dist/")
		h.files["/"+rel] = &asset{
			name:      rel,
			body:      body,
			ctype:     contentType(rel),
			immutable: strings.HasPrefix(rel, "assets/"),
			etag:      fmt.Sprintf("%x", sha256.Sum256(body))[:20],
		}
		return nil
	})
	if err != nil || h.files["/index.html"] == nil {
		return nil
	}
	h.files["/"] = h.files["/index.html"]
	return h
}

func contentType(name string) string {
	switch path.Ext(name) {
	case ".wasm":
		// WebAssembly.instantiateStreaming requires exactly this type.
		return "application/wasm"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".html":
		return "text/html; charset=utf-8"
	}
	if t := mime.TypeByExtension(path.Ext(name)); t != "" {
		return t
	}
	return "application/octet-stream"
}

// Serves reports whether the handler has something at p: the homeserver
// sends only those paths here.
func (h *Handler) Serves(p string) bool { return h.files[p] != nil }

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a := h.files[r.URL.Path]
	if a == nil || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		h.notFound.ServeHTTP(w, r)
		return
	}
	hd := w.Header()
	hd.Set("Content-Security-Policy", ContentSecurityPolicy)
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	// No other site's window keeps a handle on the client's, but the
	// popups it opens keep theirs on it: the m.login.sso fallback page posts
	// "authDone" to its opener (web/src/sso.ts); with same-origin the trip
	// through the provider would cut that link.
	hd.Set("Cross-Origin-Opener-Policy", "same-origin-allow-popups")
	hd.Set("Content-Type", a.ctype)
	if a.immutable {
		hd.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		hd.Set("Cache-Control", "no-cache")
	}
	hd.Add("Vary", "Accept-Encoding")
	body := a.body
	if acceptsGzip(r) {
		if gz := a.gzipped(); gz != nil {
			hd.Set("Content-Encoding", "gzip")
			body = gz
		}
	}
	// ServeContent answers Range and If-None-Match; the zero time leaves
	// Last-Modified out (embedded files have none).
	if len(body) != len(a.body) {
		hd.Set("ETag", `"`+a.etag+`-gz"`)
	} else {
		hd.Set("ETag", `"`+a.etag+`"`)
	}
	http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(body))
}

func (a *asset) gzipped() []byte {
	a.gzOnce.Do(func() {
		if len(a.body) < 1024 {
			return
		}
		var b bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
		zw.Write(a.body)
		zw.Close()
		if b.Len() < len(a.body)*9/10 {
			a.gz = b.Bytes()
		}
	})
	return a.gz
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		name, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(name), "gzip") && strings.ReplaceAll(strings.TrimSpace(q), " ", "") != "q=0" {
			return true
		}
	}
	return false
}
