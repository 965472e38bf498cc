package fedclient

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"conclave/internal/outbound"
)

// multipartAnswer writes a federation media answer whose second part is
// either content or a Location.
func multipartAnswer(w http.ResponseWriter, secondHeaders, content string) {
	w.Header().Set("Content-Type", "multipart/mixed; boundary=BOUND")
	io.WriteString(w, "--BOUND\r\nContent-Type: application/json\r\n\r\n{}\r\n--BOUND\r\n"+secondHeaders+"\r\n"+content+"\r\n--BOUND--\r\n")
}

// TestDownloadMedia: the multipart answer is read (content, or a Location
// followed only over https to hosts the closed circle allows), bounded.
func TestDownloadMedia(t *testing.T) {
	e := newEnv(t)
	location := ""
	e.other.handler = func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/_matrix/federation/v1/media/download/direct":
			multipartAnswer(w, "Content-Type: text/plain\r\nContent-Disposition: inline; filename=a.txt\r\n", "direct content")
		case r.URL.Path == "/_matrix/federation/v1/media/download/moved":
			multipartAnswer(w, "Location: "+location+"\r\n", "")
		case r.URL.Path == "/_matrix/federation/v1/media/download/notmultipart":
			w.Write([]byte("plain"))
		case r.URL.Path == "/_matrix/federation/v1/media/download/nometa":
			w.Header().Set("Content-Type", "multipart/mixed; boundary=B")
			io.WriteString(w, "--B\r\nContent-Type: application/json\r\n\r\n[1]\r\n--B\r\n\r\nx\r\n--B--\r\n")
		default:
			w.WriteHeader(404)
			w.Write([]byte(`{"errcode":"M_NOT_FOUND","error":"no"}`))
		}
	}
	// The place a Location leads to: unsigned requests, plain answers, and
	// one more redirect.
	e.def.handler = func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/file":
			w.Header().Set("Content-Type", "image/png")
			w.Header().Set("Content-Disposition", "attachment; filename=\"f.png\"")
			w.Write([]byte("redirected content"))
		case "/hop":
			http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}
	ctx := context.Background()
	dest := "b.test:" + port(e.other.port)
	cdn := "https://other.test:" + port(e.def.port)
	read := func(c *Client, id string, max int64) (*Media, string, error) {
		var got Media
		var body []byte
		err := c.DownloadMedia(ctx, dest, id, 1000, max, func(m *Media) error {
			got = *m
			var err error
			body, err = io.ReadAll(m.Body)
			return err
		})
		return &got, string(body), err
	}

	open := e.client()
	defer open.CloseIdleConnections()
	m, body, err := read(open, "direct", 100)
	if err != nil || body != "direct content" || m.ContentType != "text/plain" || m.Disposition != "inline; filename=a.txt" {
		t.Fatalf("direct: %+v %q %v", m, body, err)
	}
	if r := e.other.last(t); r.URI != "/_matrix/federation/v1/media/download/direct?timeout_ms=1000" {
		t.Fatalf("asked %s", r.URI)
	} else {
		checkSigned(t, r, e.key, "origin.test", dest)
	}
	if _, _, err := read(open, "direct", 5); !errors.Is(err, outbound.ErrTooLarge) {
		t.Fatalf("over the limit: %v", err)
	}
	var fe *Error
	if _, _, err := read(open, "absent", 100); !errors.As(err, &fe) || fe.Status != 404 {
		t.Fatalf("absent: %v", err)
	}
	for _, id := range []string{"notmultipart", "nometa"} {
		if _, _, err := read(open, id, 100); !errors.Is(err, ErrMediaAnswer) {
			t.Fatalf("%s: %v", id, err)
		}
	}

	// Location, open federation: followed, unsigned.
	location = cdn + "/file"
	m, body, err = read(open, "moved", 100)
	if err != nil || body != "redirected content" || m.ContentType != "image/png" || m.Disposition != `attachment; filename="f.png"` {
		t.Fatalf("location: %+v %q %v", m, body, err)
	}
	if r := e.def.last(t); r.Auth != "" || r.URI != "/file" {
		t.Fatalf("location request %+v", r)
	}
	// Through a further redirect too.
	location = cdn + "/hop?to=" + cdn + "/file"
	if _, body, err = read(open, "moved", 100); err != nil || body != "redirected content" {
		t.Fatalf("location with a redirect: %q %v", body, err)
	}
	// Never over plain http, not even one hop on.
	before := len(e.def.requests())
	location = "http://other.test:" + port(e.def.port) + "/file"
	if _, _, err = read(open, "moved", 100); !errors.Is(err, ErrMediaAnswer) {
		t.Fatalf("http location: %v", err)
	}
	location = cdn + "/hop?to=http://other.test:" + port(e.def.port) + "/file"
	if _, _, err = read(open, "moved", 100); err == nil {
		t.Fatal("a redirect to http was followed")
	}
	if n := len(e.def.requests()); n != before+1 {
		t.Fatalf("%d requests to the location's host, want only the first hop", n-before)
	}

	// Closed circle: only hosts it names, on every hop.
	closed := e.client(func(o *Options) { o.Allow = []string{dest, "allowed.test"} })
	defer closed.CloseIdleConnections()
	location = cdn + "/file"
	if _, _, err = read(closed, "moved", 100); !errors.Is(err, outbound.ErrNotAllowed) {
		t.Fatalf("location outside the circle: %v", err)
	}
	location = "https://allowed.test:" + port(e.def.port) + "/file"
	if _, body, err = read(closed, "moved", 100); err != nil || body != "redirected content" {
		t.Fatalf("location inside the circle: %q %v", body, err)
	}
	location = "https://allowed.test:" + port(e.def.port) + "/hop?to=" + cdn + "/file"
	if _, _, err = read(closed, "moved", 100); !errors.Is(err, outbound.ErrNotAllowed) {
		t.Fatalf("redirect out of the circle: %v", err)
	}
}

// FuzzReadMediaAnswer: whatever another server answers, reading it ends in
// content within the limit or an error; nothing panics, and a Location is
// never followed outside the circle (here: a name nothing resolves).
func FuzzReadMediaAnswer(f *testing.F) {
	f.Add("multipart/mixed; boundary=B", "--B\r\nContent-Type: application/json\r\n\r\n{}\r\n--B\r\nContent-Type: text/plain\r\n\r\nhello\r\n--B--\r\n")
	f.Add("multipart/mixed; boundary=B", "\r\n--B\r\n\r\n{}\r\n--B\r\nLocation: https://only.invalid/x\r\n\r\n\r\n--B--")
	f.Add("multipart/mixed; boundary=B", "--B\r\n\r\n[]\r\n--B--")
	f.Add("text/plain", "plain")
	c := New(Options{ServerName: "origin.test", Allow: []string{"only.invalid"}, Resolver: newDNS()})
	defer c.CloseIdleConnections()
	f.Fuzz(func(t *testing.T, contentType, body string) {
		req := httptest.NewRequest("GET", "https://b.test/", nil)
		res := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {contentType}}, Body: io.NopCloser(strings.NewReader(body)), Request: req}
		const limit = 64
		err := c.readMediaAnswer(res, limit, func(m *Media) error {
			b, err := io.ReadAll(m.Body)
			if len(b) > limit {
				t.Fatalf("read %d bytes past the limit", len(b))
			}
			return err
		})
		_ = err
	})
}
