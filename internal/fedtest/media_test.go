package fedtest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"conclave/internal/accounts"
	"conclave/internal/clamd/clamdtest"
	"conclave/internal/config"
	"conclave/internal/fedclient"
	"conclave/internal/homeserver/hstest"
	"conclave/internal/media"
	"conclave/internal/store"
	"conclave/internal/xmatrix"
)

// rawResp is an answer read whole, with its headers.
type rawResp struct {
	Status int
	Header http.Header
	Body   []byte
}

func rawDo(t testing.TB, s *hstest.Server, method, path, token, contentType string, body []byte) *rawResp {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	return &rawResp{Status: res.StatusCode, Header: res.Header, Body: data}
}

// uploadTo uploads content on s and returns its media ID.
func uploadTo(t testing.TB, s *hstest.Server, u *hstest.User, contentType, filename string, data []byte) string {
	t.Helper()
	res := rawDo(t, s, "POST", "/_matrix/media/v3/upload?filename="+filename, u.Token, contentType, data)
	if res.Status != 200 {
		t.Fatalf("upload: %d %s", res.Status, res.Body)
	}
	uri := string(res.Body)
	i := strings.Index(uri, "mxc://"+s.ServerName+"/")
	if i < 0 {
		t.Fatalf("upload answer %s", res.Body)
	}
	id := uri[i+len("mxc://"+s.ServerName+"/"):]
	return id[:strings.IndexByte(id, '"')]
}

// fedGet sends a GET to s's federation listener, signed by from (unsigned
// when nil).
func fedGet(t *testing.T, s *hstest.Server, uri string, from *hstest.Server) *rawResp {
	t.Helper()
	req, err := http.NewRequest("GET", s.FederationURL+uri, nil)
	if err != nil {
		t.Fatal(err)
	}
	if from != nil {
		h, err := xmatrix.Sign(from.HS.SigningKey, "GET", uri, from.ServerName, s.ServerName, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", h.String())
	}
	roots := x509.NewCertPool()
	roots.AddCert(s.CA.Cert)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}}}
	defer c.CloseIdleConnections()
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	return &rawResp{Status: res.StatusCode, Header: res.Header, Body: data}
}

func wantStatus(t *testing.T, r *rawResp, status int, errcode string) {
	t.Helper()
	if r.Status != status || (errcode != "" && !bytes.Contains(r.Body, []byte(`"`+errcode+`"`))) {
		t.Fatalf("status %d %s, want %d %s", r.Status, r.Body, status, errcode)
	}
}

func makeAdmin(t *testing.T, s *hstest.Server, localpart string) *hstest.User {
	t.Helper()
	ctx := context.Background()
	userID := "@" + localpart + ":" + s.Config.ServerName
	now := time.Now().UnixMilli()
	if err := s.HS.Store.CreateUser(ctx, &store.User{UserID: userID, IsAdmin: true, CreatedTS: now}); err != nil {
		t.Fatal(err)
	}
	u := &hstest.User{UserID: userID, DeviceID: "ADMIN", Token: accounts.NewToken("syt_")}
	if err := s.HS.Store.CreateDevice(ctx, &store.Device{UserID: userID, DeviceID: u.DeviceID, CreatedTS: now}, store.NewToken{AccessHash: accounts.HashToken(u.Token)}); err != nil {
		t.Fatal(err)
	}
	return u
}

func pngImage(t *testing.T, w, h int) []byte {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), 128, 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func remoteDL(server, id string) string {
	return "/_matrix/client/v1/media/download/" + server + "/" + id
}

// TestRemoteMedia: a user of A reads media uploaded on B through A, which
// fetches it over federation once and keeps it.
func TestRemoteMedia(t *testing.T) {
	ss := hstest.StartFederation(t, 2)
	a, b := ss[0], ss[1]
	alice, bob := a.CreateUser(t, "alice"), b.CreateUser(t, "bob")
	B := b.ServerName
	ctx := context.Background()

	id := uploadTo(t, b, bob, "text/plain", "hi.txt", []byte("hello from B"))
	r := rawDo(t, a, "GET", remoteDL(B, id), alice.Token, "", nil)
	wantStatus(t, r, 200, "")
	if string(r.Body) != "hello from B" || r.Header.Get("Content-Type") != "text/plain" || r.Header.Get("Content-Disposition") != "inline; filename=hi.txt" {
		t.Fatalf("remote download: %q %v", r.Body, r.Header)
	}
	m, err := a.HS.Store.GetRemoteMedia(ctx, B, id)
	if err != nil || m.SHA256 == "" || m.Size != 12 || !m.Restricted || m.Filename != "hi.txt" {
		t.Fatalf("cached row %+v %v", m, err)
	}
	// With a file name of the client's choosing.
	r = rawDo(t, a, "GET", remoteDL(B, id)+"/other.txt", alice.Token, "", nil)
	if r.Status != 200 || r.Header.Get("Content-Disposition") != "inline; filename=other.txt" {
		t.Fatalf("with file name: %d %v", r.Status, r.Header)
	}
	// Unauthenticated: 401 on the new endpoint; the deprecated one serves
	// remote media as it serves local media while the legacy freeze is off
	// (with it on it serves neither: internal/media's tests).
	wantStatus(t, rawDo(t, a, "GET", remoteDL(B, id), "", "", nil), 401, "M_MISSING_TOKEN")
	if r := rawDo(t, a, "GET", "/_matrix/media/v3/download/"+B+"/"+id, "", "", nil); r.Status != 200 {
		t.Fatalf("legacy download of remote media: %d %s", r.Status, r.Body)
	}
	id2 := uploadTo(t, b, bob, "text/plain", "", []byte("fetched through the legacy endpoint"))
	if r := rawDo(t, a, "GET", "/_matrix/media/v3/download/"+B+"/"+id2, "", "", nil); r.Status != 200 || string(r.Body) != "fetched through the legacy endpoint" {
		t.Fatalf("legacy fetch of remote media: %d %s", r.Status, r.Body)
	}
	// The cached copy's own ID is no local media of A.
	wantStatus(t, rawDo(t, a, "GET", remoteDL(a.ServerName, m.MediaID), alice.Token, "", nil), 404, "M_NOT_FOUND")
	// Unknown on B: 404 through A. Outside the closed circle: never asked.
	wantStatus(t, rawDo(t, a, "GET", remoteDL(B, "nosuchmedia"), alice.Token, "", nil), 404, "M_NOT_FOUND")
	wantStatus(t, rawDo(t, a, "GET", remoteDL("elsewhere.example", "abc"), alice.Token, "", nil), 403, "M_FORBIDDEN")

	// The federation answer itself: multipart/mixed, {} then the content.
	var got fedclient.Media
	var body []byte
	err = a.HS.FedClient.DownloadMedia(ctx, B, id, 0, 1<<20, func(fm *fedclient.Media) error {
		got = *fm
		body, err = io.ReadAll(fm.Body)
		return err
	})
	if err != nil || string(body) != "hello from B" || got.ContentType != "text/plain" || got.Disposition != "inline; filename=hi.txt" || got.Length != 12 {
		t.Fatalf("federation download: %+v %q %v", got, body, err)
	}
	// On the wire: signed requests only; multipart/mixed whose first
	// boundary follows a CRLF (readers such as Ruma's expect one), {} first.
	uri := "/_matrix/federation/v1/media/download/" + id
	wantStatus(t, fedGet(t, b, uri, nil), 401, "")
	raw := fedGet(t, b, uri, a)
	mt, params, _ := mime.ParseMediaType(raw.Header.Get("Content-Type"))
	if raw.Status != 200 || mt != "multipart/mixed" || !bytes.HasPrefix(raw.Body, []byte("\r\n--"+params["boundary"]+"\r\n")) ||
		!bytes.Contains(raw.Body, []byte("Content-Type: application/json\r\n\r\n{}\r\n")) {
		t.Fatalf("federation answer: %d %v %q", raw.Status, raw.Header, raw.Body)
	}
	// Over the limit the caller gives: refused while reading.
	err = a.HS.FedClient.DownloadMedia(ctx, B, id, 0, 5, func(fm *fedclient.Media) error {
		_, err := io.ReadAll(fm.Body)
		return err
	})
	if err == nil {
		t.Fatal("a body over the limit was read whole")
	}

	// Thumbnails of remote images are made here from the original.
	pid := uploadTo(t, b, bob, "image/png", "p.png", pngImage(t, 100, 80))
	r = rawDo(t, a, "GET", "/_matrix/client/v1/media/thumbnail/"+B+"/"+pid+"?width=32&height=32&method=crop", alice.Token, "", nil)
	wantStatus(t, r, 200, "")
	img, err := png.Decode(bytes.NewReader(r.Body))
	if err != nil || img.Bounds().Dx() != 32 || img.Bounds().Dy() != 32 {
		t.Fatalf("remote thumbnail: %v %v", img.Bounds(), err)
	}
	// And B serves its own thumbnails over federation.
	var thumbType string
	err = a.HS.FedClient.ThumbnailMedia(ctx, B, pid, map[string][]string{"width": {"32"}, "height": {"32"}, "method": {"crop"}}, 1<<20, func(fm *fedclient.Media) error {
		thumbType = fm.ContentType
		img, err = png.Decode(fm.Body)
		return err
	})
	if err != nil || thumbType != "image/png" || img.Bounds().Dx() != 32 {
		t.Fatalf("federation thumbnail: %q %v", thumbType, err)
	}
}

// TestRemoteMediaQuarantine: an admin of A quarantines remote media, cached
// or not yet: A's users get 404 and nothing is fetched meanwhile.
func TestRemoteMediaQuarantine(t *testing.T) {
	ss := hstest.StartFederation(t, 2)
	a, b := ss[0], ss[1]
	alice, bob := a.CreateUser(t, "alice"), b.CreateUser(t, "bob")
	admin := makeAdmin(t, a, "admin")
	B := b.ServerName
	ctx := context.Background()

	id := uploadTo(t, b, bob, "text/plain", "", []byte("cached first"))
	wantStatus(t, rawDo(t, a, "GET", remoteDL(B, id), alice.Token, "", nil), 200, "")
	q := func(verb, id string) *rawResp {
		return rawDo(t, a, "POST", "/_synapse/admin/v1/media/"+verb+"/"+B+"/"+id, admin.Token, "application/json", []byte("{}"))
	}
	wantStatus(t, q("quarantine", id), 200, "")
	wantStatus(t, rawDo(t, a, "GET", remoteDL(B, id), alice.Token, "", nil), 404, "M_NOT_FOUND")
	wantStatus(t, rawDo(t, a, "GET", "/_matrix/client/v1/media/thumbnail/"+B+"/"+id+"?width=32&height=32", alice.Token, "", nil), 404, "M_NOT_FOUND")
	wantStatus(t, q("unquarantine", id), 200, "")
	wantStatus(t, rawDo(t, a, "GET", remoteDL(B, id), alice.Token, "", nil), 200, "")

	// Not fetched yet: quarantined all the same, and never fetched.
	id2 := uploadTo(t, b, bob, "text/plain", "", []byte("quarantined before"))
	wantStatus(t, q("quarantine", id2), 200, "")
	wantStatus(t, rawDo(t, a, "GET", remoteDL(B, id2), alice.Token, "", nil), 404, "M_NOT_FOUND")
	if m, err := a.HS.Store.GetRemoteMedia(ctx, B, id2); err != nil || m.SHA256 != "" || !m.Quarantined {
		t.Fatalf("placeholder %+v %v", m, err)
	}
	// Lifted: fetched on the next request.
	wantStatus(t, q("unquarantine", id2), 200, "")
	r := rawDo(t, a, "GET", remoteDL(B, id2), alice.Token, "", nil)
	if r.Status != 200 || string(r.Body) != "quarantined before" {
		t.Fatalf("after unquarantine: %d %s", r.Status, r.Body)
	}
	// Unquarantining what is not there at all is 404.
	wantStatus(t, q("unquarantine", "nothinghere"), 404, "M_NOT_FOUND")

	// B's own quarantine holds for other servers: 404, nothing cached.
	bAdmin := makeAdmin(t, b, "badmin")
	id3 := uploadTo(t, b, bob, "text/plain", "", []byte("quarantined at home"))
	wantStatus(t, rawDo(t, b, "POST", "/_synapse/admin/v1/media/quarantine/"+B+"/"+id3, bAdmin.Token, "application/json", []byte("{}")), 200, "")
	wantStatus(t, rawDo(t, a, "GET", remoteDL(B, id3), alice.Token, "", nil), 404, "M_NOT_FOUND")
	if _, err := a.HS.Store.GetRemoteMedia(ctx, B, id3); err == nil {
		t.Fatal("media quarantined at its origin was cached")
	}

	// Created on B but not uploaded yet: B's 504 M_NOT_YET_UPLOADED is A's.
	c := rawDo(t, b, "POST", "/_matrix/media/v1/create", bob.Token, "application/json", []byte("{}"))
	var created struct {
		URI string `json:"content_uri"`
	}
	if err := json.Unmarshal(c.Body, &created); err != nil || c.Status != 200 {
		t.Fatalf("create: %d %s", c.Status, c.Body)
	}
	pending := created.URI[len("mxc://"+B+"/"):]
	wantStatus(t, rawDo(t, a, "GET", remoteDL(B, pending)+"?timeout_ms=0", alice.Token, "", nil), 504, "M_NOT_YET_UPLOADED")
}

// TestRemoteMediaLimits: remote content over A's upload limit is refused
// with 502 M_TOO_LARGE and nothing of it is kept.
func TestRemoteMediaLimits(t *testing.T) {
	ss := hstest.StartFederationEach(t, 2, func(i int, c *config.Config) {
		if i == 0 {
			c.MaxUploadBytes = 1000
		}
	})
	a, b := ss[0], ss[1]
	alice, bob := a.CreateUser(t, "alice"), b.CreateUser(t, "bob")
	B := b.ServerName
	id := uploadTo(t, b, bob, "application/octet-stream", "", bytes.Repeat([]byte("x"), 1001))
	wantStatus(t, rawDo(t, a, "GET", remoteDL(B, id), alice.Token, "", nil), 502, "M_TOO_LARGE")
	if _, err := a.HS.Store.GetRemoteMedia(context.Background(), B, id); err == nil {
		t.Fatal("too large remote media was recorded")
	}
	ok := uploadTo(t, b, bob, "application/octet-stream", "", bytes.Repeat([]byte("x"), 1000))
	wantStatus(t, rawDo(t, a, "GET", remoteDL(B, ok), alice.Token, "", nil), 200, "")
}

// countingFetcher counts fetches and holds them until released.
type countingFetcher struct {
	media.Fetcher
	n       atomic.Int32
	release chan struct{}
}

func (f *countingFetcher) FetchMedia(ctx context.Context, origin, mediaID string, wait time.Duration, maxBytes int64, fn func(*media.Remote) error) error {
	f.n.Add(1)
	<-f.release
	return f.Fetcher.FetchMedia(ctx, origin, mediaID, wait, maxBytes, fn)
}

// TestRemoteMediaFetchedOnce: concurrent requests for the same remote media
// share one fetch.
func TestRemoteMediaFetchedOnce(t *testing.T) {
	ss := hstest.StartFederation(t, 2)
	a, b := ss[0], ss[1]
	alice, bob := a.CreateUser(t, "alice"), b.CreateUser(t, "bob")
	B := b.ServerName
	id := uploadTo(t, b, bob, "text/plain", "", []byte("once"))

	const n = 5
	f := &countingFetcher{Fetcher: a.HS.Media.Fetcher(), release: make(chan struct{})}
	a.HS.Media.SetFetcher(f)
	all := make(chan struct{})
	a.HS.Media.OnFetchJoined(func(key string, joined int) {
		if joined == n {
			close(all)
		}
	})
	var wg sync.WaitGroup
	results := make([]*rawResp, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = rawDo(t, a, "GET", remoteDL(B, id), alice.Token, "", nil)
		}()
	}
	<-all // every request waits on the one fetch
	close(f.release)
	wg.Wait()
	for i, r := range results {
		if r.Status != 200 || string(r.Body) != "once" {
			t.Fatalf("request %d: %d %s", i, r.Status, r.Body)
		}
	}
	if got := f.n.Load(); got != 1 {
		t.Fatalf("%d fetches for %d concurrent requests, want 1", got, n)
	}
	if a.HS.Media.RemoteFetches() != 0 {
		t.Fatal("a finished fetch is still registered")
	}
	// Cached: later requests fetch nothing.
	wantStatus(t, rawDo(t, a, "GET", remoteDL(B, id), alice.Token, "", nil), 200, "")
	if got := f.n.Load(); got != 1 {
		t.Fatalf("%d fetches after a cached read", got)
	}
}

// TestRemoteMediaAntivirus: A scans what it fetches like an upload; B has
// no scanner. Infected remote content is refused and not kept.
func TestRemoteMediaAntivirus(t *testing.T) {
	d := clamdtest.Start(t)
	ss := hstest.StartFederationEach(t, 2, func(i int, c *config.Config) {
		if i == 0 {
			c.ClamdAddress = d.TCP
		}
	})
	a, b := ss[0], ss[1]
	alice, bob := a.CreateUser(t, "alice"), b.CreateUser(t, "bob")
	B := b.ServerName
	ctx := context.Background()
	bad := uploadTo(t, b, bob, "application/octet-stream", "", clamdtest.EICAR())
	r := rawDo(t, a, "GET", remoteDL(B, bad), alice.Token, "", nil)
	wantStatus(t, r, 403, "M_FORBIDDEN")
	if !bytes.Contains(r.Body, []byte(clamdtest.Signature)) {
		t.Errorf("refusal does not name the signature: %s", r.Body)
	}
	if _, err := a.HS.Store.GetRemoteMedia(ctx, B, bad); err == nil {
		t.Fatal("infected remote media was recorded")
	}
	good := uploadTo(t, b, bob, "text/plain", "", []byte("clean"))
	wantStatus(t, rawDo(t, a, "GET", remoteDL(B, good), alice.Token, "", nil), 200, "")
	if m, err := a.HS.Store.GetRemoteMedia(ctx, B, good); err != nil || m.ScanStatus != store.ScanClean {
		t.Fatalf("clean remote media row %+v %v", m, err)
	}
}
