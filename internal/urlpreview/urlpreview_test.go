package urlpreview_test

import (
	"bytes"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"conclave/internal/config"
	"conclave/internal/homeserver/hstest"
	"conclave/internal/urlpreview"
)

func TestParseHTML(t *testing.T) {
	page := `<!doctype html><html><head><title> The Rock (1996) </title>
<meta property="og:title" content="The Rock"><meta property="og:title" content="second">
<meta name="description" content="Alcatraz">
<meta property="og:image" content="/img.png" /></head><body><meta property="og:late" content="x"></body></html>`
	got := urlpreview.ParseHTML([]byte(page))
	want := map[string]string{"og:title": "The Rock", "og:image": "/img.png", "og:description": "Alcatraz"}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("%s: %q, want %q (%v)", k, got[k], v, got)
		}
	}
	// No OpenGraph: the title stands in; values are bounded.
	got = urlpreview.ParseHTML([]byte(`<title>` + strings.Repeat("é", 5000) + `</title>`))
	if len(got["og:title"]) > 4096 || !strings.HasPrefix(got["og:title"], "éé") || strings.ContainsRune(got["og:title"], '\uFFFD') {
		t.Fatalf("bounded title: %d bytes", len(got["og:title"]))
	}
	if got := urlpreview.ParseHTML([]byte("\x00<<<>>>")); len(got) != 0 {
		t.Fatalf("garbage: %v", got)
	}
}

func testPNG(t *testing.T, w, h int) []byte {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	img.Set(1, 1, color.RGBA{R: 200, A: 255})
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// A preview as a client gets it (Complement's TestUrlPreview): OpenGraph
// keys, the image stored as local media with its size and dimensions; one
// fetch for concurrent and repeated requests; a server without
// url_preview_allow_private_addresses never contacts a loopback site.
func TestPreviewOverHTTP(t *testing.T) {
	pic := testPNG(t, 279, 129)
	var pages, images atomic.Int32
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/test.html":
			pages.Add(1)
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Write([]byte(`<html prefix="og: http://ogp.me/ns#"><head><title>The Rock (1996)</title>
<meta property="og:title" content="The Rock" /><meta property="og:type" content="video.movie" />
<meta property="og:url" content="http://www.imdb.com/title/tt0117500/" /><meta property="og:image" content="test.png" /></head><body></body></html>`))
		case "/test.png":
			images.Add(1)
			w.Header().Set("Content-Type", "image/png")
			w.Write(pic)
		case "/moved":
			http.Redirect(w, r, "/test.html", http.StatusFound)
		case "/elsewhere":
			http.Redirect(w, r, "file:///etc/passwd", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	defer site.Close()

	s := hstest.Start(t, func(c *config.Config) { c.URLPreview = true; c.URLPreviewAllowPrivate = true })
	alice := s.CreateUser(t, "alice")
	preview := func(u string) *hstest.Response {
		return s.Do(t, "GET", "/_matrix/client/v1/media/preview_url?url="+url.QueryEscape(u), alice.Token, nil)
	}
	var wg sync.WaitGroup
	res := make([]*hstest.Response, 5)
	for i := range res {
		wg.Add(1)
		go func() { defer wg.Done(); res[i] = preview(site.URL + "/test.html") }()
	}
	wg.Wait()
	for _, r := range res {
		if r.Status != 200 || string(r.Body) != string(res[0].Body) {
			t.Fatalf("preview: %d %s", r.Status, r.Body)
		}
	}
	var p map[string]any
	json.Unmarshal(res[0].Body, &p)
	if p["og:title"] != "The Rock" || p["og:type"] != "video.movie" || p["og:url"] != "http://www.imdb.com/title/tt0117500/" ||
		p["matrix:image:size"] != float64(len(pic)) || p["og:image:width"] != 279.0 || p["og:image:height"] != 129.0 {
		t.Fatalf("preview: %s", res[0].Body)
	}
	mxc, _ := p["og:image"].(string)
	id, ok := strings.CutPrefix(mxc, "mxc://localhost/")
	if !ok {
		t.Fatalf("og:image %q", mxc)
	}
	if got := s.MustOK(t, "GET", "/_matrix/client/v1/media/download/localhost/"+id, alice.Token, nil); !bytes.Equal(got.Body, pic) {
		t.Fatal("the stored image differs")
	}
	if r := preview(site.URL + "/test.html"); r.Status != 200 || pages.Load() != 1 || images.Load() != 1 {
		t.Fatalf("the page was fetched %d times, the image %d times", pages.Load(), images.Load())
	}
	// Redirects are followed to http(s) only; the legacy path works too.
	if r := s.Do(t, "GET", "/_matrix/media/v3/preview_url?url="+url.QueryEscape(site.URL+"/moved"), alice.Token, nil); r.Status != 200 {
		t.Fatalf("redirected preview: %d %s", r.Status, r.Body)
	}
	if r := preview(site.URL + "/elsewhere"); r.Status != 502 {
		t.Fatalf("redirect to file://: %d %s", r.Status, r.Body)
	}
	for _, bad := range []string{"", "file:///etc/passwd", "http://user:pw@example.org/", "javascript:alert(1)"} {
		if r := preview(bad); r.Status != 400 {
			t.Fatalf("%q: %d %s", bad, r.Status, r.Body)
		}
	}
	if r := s.Do(t, "GET", "/_matrix/client/v1/media/preview_url?url="+url.QueryEscape(site.URL+"/test.html"), "", nil); r.Status != 401 {
		t.Fatalf("without a token: %d", r.Status)
	}

	// Without the operator's permission a loopback site is never contacted.
	closed := hstest.Start(t, func(c *config.Config) { c.URLPreview = true })
	bob := closed.CreateUser(t, "bob")
	before := pages.Load()
	if r := closed.Do(t, "GET", "/_matrix/client/v1/media/preview_url?url="+url.QueryEscape(site.URL+"/test.html"), bob.Token, nil); r.Status == 200 {
		t.Fatalf("previewed a loopback address: %s", r.Body)
	}
	if pages.Load() != before {
		t.Fatal("the loopback site was contacted")
	}
}
