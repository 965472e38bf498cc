package server

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"conclave/internal/jsonhttp"
)

// A request whose client went away is no server error: it is logged at
// debug level, while a real 5xx and an overload (the deadline passed) stay
// visible to the operator.
func TestAccessLogLevelOfAbandonedRequests(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	h := Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		jsonhttp.Error(w, r, r.Context().Err())
	}), log)

	gone, cancel := context.WithCancel(context.Background())
	cancel()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/sync", nil).WithContext(gone))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d", rec.Code)
	}
	if buf.Len() != 0 {
		t.Fatalf("a client that went away was logged: %s", buf.String())
	}

	late, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/sync", nil).WithContext(late))
	if !strings.Contains(buf.String(), "level=ERROR") || !strings.Contains(buf.String(), "status=503") {
		t.Fatalf("an overload was not logged as an error: %s", buf.String())
	}
}
