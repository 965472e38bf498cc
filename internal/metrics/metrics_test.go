package metrics

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"conclave/internal/server"
)

func testMux() *server.Mux {
	mux := server.NewMux()
	mux.HandleFunc("GET /_matrix/client/v3/rooms/{roomId}/state", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("POST /_matrix/client/v3/login", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTooManyRequests)
	})
	mux.HandleFunc("GET /boom", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	})
	return mux
}

// Instrument labels by pattern and status class, with and without an outer
// writer that records the status, and bounds client-chosen methods.
func TestInstrument(t *testing.T) {
	for _, outer := range []bool{false, true} {
		m := New()
		mux := testMux()
		var h http.Handler = m.Instrument(mux, mux.Patterns())
		if outer {
			h = server.Wrap(h, slog.New(slog.NewTextHandler(io.Discard, nil)))
		}
		for _, req := range []struct{ method, path string }{
			{"GET", "/_matrix/client/v3/rooms/!a:x/state"},
			{"GET", "/_matrix/client/v3/rooms/!b:x/state"},
			{"HEAD", "/_matrix/client/v3/rooms/!b:x/state"},
			{"POST", "/_matrix/client/v3/login"},
			{"GET", "/boom"},
			{"GET", "/unknown/path"},
			{"PUT", "/_matrix/client/v3/login"}, // 405 from the fallback
			{"X-CUSTOM", "/unknown"},
		} {
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(req.method, req.path, nil))
		}
		want := `
# HELP conclave_http_requests_total Client API requests answered, by route pattern, method and status class.
# TYPE conclave_http_requests_total counter
conclave_http_requests_total{code="2xx",method="GET",route="/_matrix/client/v3/rooms/{roomId}/state"} 3
conclave_http_requests_total{code="4xx",method="OTHER",route="unmatched"} 1
conclave_http_requests_total{code="4xx",method="GET",route="unmatched"} 1
conclave_http_requests_total{code="4xx",method="PUT",route="unmatched"} 1
conclave_http_requests_total{code="4xx",method="POST",route="/_matrix/client/v3/login"} 1
conclave_http_requests_total{code="5xx",method="GET",route="/boom"} 1
# HELP conclave_http_rate_limited_total Client API requests refused with 429 M_LIMIT_EXCEEDED, by route pattern and method.
# TYPE conclave_http_rate_limited_total counter
conclave_http_rate_limited_total{method="POST",route="/_matrix/client/v3/login"} 1
# HELP conclave_http_requests_in_flight Client API requests being handled now (including /sync long-polls).
# TYPE conclave_http_requests_in_flight gauge
conclave_http_requests_in_flight 0
`
		if err := testutil.GatherAndCompare(m.reg, strings.NewReader(want), "conclave_http_requests_total", "conclave_http_rate_limited_total", "conclave_http_requests_in_flight"); err != nil {
			t.Errorf("outer writer %v: %v", outer, err)
		}
		if n := testutil.CollectAndCount(m.duration); n != 6 {
			t.Errorf("outer writer %v: %d duration series, want 6 (one per route and method used)", outer, n)
		}
	}
}

// A panicking handler still leaves the in-flight gauge at zero.
func TestInstrumentPanic(t *testing.T) {
	m := New()
	mux := server.NewMux()
	mux.HandleFunc("GET /panic", func(http.ResponseWriter, *http.Request) { panic("x") })
	h := server.Wrap(m.Instrument(mux, mux.Patterns()), slog.New(slog.NewTextHandler(io.Discard, nil)))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/panic", nil))
	if v := testutil.ToFloat64(m.inflight); v != 0 {
		t.Fatalf("in flight %v after a panic", v)
	}
}

func TestFuncMetrics(t *testing.T) {
	m := New()
	waiting, woken, bytes := 2, uint64(7), int64(1234)
	m.SyncWaiting(func() int { return waiting })
	m.NotifierWakeups(func() uint64 { return woken })
	m.MediaUploadedBytes(func() int64 { return bytes })
	m.EventsPersisted(3)
	m.GroupCommit(1)
	m.GroupCommit(5)
	want := `
# HELP conclave_events_persisted_total Room events written to the store by this process.
# TYPE conclave_events_persisted_total counter
conclave_events_persisted_total 3
# HELP conclave_media_uploaded_bytes_total Bytes of media content stored by uploads.
# TYPE conclave_media_uploaded_bytes_total counter
conclave_media_uploaded_bytes_total 1234
# HELP conclave_notifier_wakeups_total Waiting /sync requests woken because something they follow changed.
# TYPE conclave_notifier_wakeups_total counter
conclave_notifier_wakeups_total 7
# HELP conclave_sync_waiting /sync long-polls currently waiting for news.
# TYPE conclave_sync_waiting gauge
conclave_sync_waiting 2
`
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(want), "conclave_events_persisted_total", "conclave_media_uploaded_bytes_total", "conclave_notifier_wakeups_total", "conclave_sync_waiting"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(m.groupCommit); n != 1 {
		t.Errorf("group commit histogram: %d series", n)
	}
}

// nopWriter is a reusable ResponseWriter that records the status, like the
// access log's writer in front of the instrumented mux in the server.
type nopWriter struct {
	h      http.Header
	status int
}

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(code int)        { w.status = code }
func (w *nopWriter) Status() int                 { return w.status }

// BenchmarkMux and BenchmarkInstrumented differ by the metrics middleware
// only: their difference is its cost per request.
func BenchmarkMux(b *testing.B) {
	mux := testMux()
	benchServe(b, mux)
}

func BenchmarkInstrumented(b *testing.B) {
	mux := testMux()
	benchServe(b, New().Instrument(mux, mux.Patterns()))
}

func benchServe(b *testing.B, h http.Handler) {
	r := httptest.NewRequest("GET", "/_matrix/client/v3/rooms/!room:example.org/state", nil)
	w := &nopWriter{h: http.Header{}, status: 200}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}

func BenchmarkInstrumentedParallel(b *testing.B) {
	mux := testMux()
	h := New().Instrument(mux, mux.Patterns())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := httptest.NewRequest("GET", "/_matrix/client/v3/rooms/!room:example.org/state", nil)
		w := &nopWriter{h: http.Header{}, status: 200}
		for pb.Next() {
			h.ServeHTTP(w, r)
		}
	})
}
