package server

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"conclave/internal/jsonhttp"
)

func TestWithDeadline(t *testing.T) {
	var got time.Duration
	h := WithDeadline(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, ok := r.Context().Deadline()
		if !ok {
			t.Fatal("no deadline")
		}
		got = time.Until(d)
	}), time.Minute, 5*time.Minute, IsSlow)
	for path, want := range map[string]time.Duration{
		"/_matrix/client/v3/account/whoami":        time.Minute,
		"/_matrix/client/v3/sync":                  6 * time.Minute,
		"/_matrix/client/r0/sync":                  6 * time.Minute,
		"/_matrix/media/v3/upload":                 6 * time.Minute,
		"/_matrix/client/v1/media/download/a/b":    6 * time.Minute,
		"/_matrix/client/v3/rooms/!r:x/sync_other": time.Minute,
	} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", path, nil))
		if got > want || got < want-10*time.Second {
			t.Errorf("%s: deadline in %s, want %s", path, got, want)
		}
	}
}

// A handler whose deadline passed answers 503, not a logged 500.
func TestDeadlineExceededIs503(t *testing.T) {
	h := WithDeadline(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		jsonhttp.Error(w, r, r.Context().Err())
	}), time.Millisecond, 0, nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/x", nil))
	var body map[string]string
	json.Unmarshal(rec.Body.Bytes(), &body)
	if rec.Code != 503 || body["errcode"] != "M_UNKNOWN" {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}

func TestLimitListener(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := LimitListener(inner, 1)
	defer l.Close()
	for range 2 { // both wait in the kernel's accept queue
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	first, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	select {
	case <-accepted:
		t.Fatal("a second connection was accepted while the limit is 1")
	case <-time.After(100 * time.Millisecond):
	}
	first.Close()
	first.Close() // closing twice frees one slot only
	c := <-accepted
	c.Close()
	// Close unblocks a waiting Accept.
	l2 := LimitListener(inner, 1)
	l2.(*limitListener).sem <- struct{}{}
	errc := make(chan error, 1)
	go func() { _, err := l2.Accept(); errc <- err }()
	l2.Close()
	if err := <-errc; err == nil {
		t.Fatal("Accept after Close succeeded")
	}
}
