package mediaapi_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"conclave/internal/homeserver/hstest"
	"conclave/internal/media"
)

// Downloads that ask to wait for content (timeout_ms) must not leave
// anything behind when the media ID never gets content: unknown and
// quarantined IDs, through every route including the legacy
// unauthenticated ones (issue 17: one map entry leaked per request).
func TestWaitersLeaveNothing(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	admin := adminUser(t, s, "admin")
	q := mustUpload(t, s, alice.Token, "text/plain", "q.txt", []byte("quarantined"))
	if r := do(t, s, "POST", "/_synapse/admin/v1/media/quarantine/localhost/"+q, admin.Token, nil); r.Status != 200 {
		t.Fatalf("quarantine: %d %s", r.Status, r.Body)
	}
	const n = 200
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("unknown%d", i)
		wantErr(t, do(t, s, "GET", "/_matrix/media/v3/download/localhost/"+id+"?timeout_ms=20000", "", nil), 404, "M_NOT_FOUND")
		wantErr(t, do(t, s, "GET", "/_matrix/media/v3/thumbnail/localhost/"+id+"?width=32&height=32&timeout_ms=20000", "", nil), 404, "M_NOT_FOUND")
		wantErr(t, do(t, s, "GET", dl(id)+"?timeout_ms=20000", alice.Token, nil), 404, "M_NOT_FOUND")
		wantErr(t, do(t, s, "GET", "/_matrix/media/v3/download/localhost/"+q+"?timeout_ms=20000", "", nil), 404, "M_NOT_FOUND")
	}
	if ids, waiting := s.HS.Media.WaitingDownloads(); ids != 0 || waiting != 0 {
		t.Fatalf("after %d requests for media that never get content: %d media IDs, %d downloads still registered", 4*n, ids, waiting)
	}
}

// Downloads waiting for a created media ID are woken by its upload (only by
// it: the periodic re-read is pushed out of the test), at most
// MaxWaitersPerMedia of them wait at once, and none is left registered.
func TestPendingUploadWakesWaiters(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	s.HS.Media.SetWaitRecheck(time.Hour)
	c := do(t, s, "POST", "/_matrix/media/v1/create", alice.Token, nil)
	id := strings.TrimPrefix(c.str("content_uri"), "mxc://localhost/")

	got := make(chan *resp, media.MaxWaitersPerMedia)
	var wg sync.WaitGroup
	for i := 0; i < media.MaxWaitersPerMedia; i++ {
		wg.Add(1)
		path := dl(id) + "?timeout_ms=30000"
		token := alice.Token
		if i%2 == 1 {
			path, token = "/_matrix/media/v3/download/localhost/"+id+"?timeout_ms=30000", "" // legacy route
		}
		go func() { defer wg.Done(); got <- do(t, s, "GET", path, token, nil) }()
	}
	// Every download registered (a condition, not a delay).
	for deadline := time.Now().Add(20 * time.Second); ; {
		if ids, waiting := s.HS.Media.WaitingDownloads(); ids == 1 && waiting == media.MaxWaitersPerMedia {
			break
		}
		if time.Now().After(deadline) {
			ids, waiting := s.HS.Media.WaitingDownloads()
			t.Fatalf("waiting downloads: %d IDs, %d downloads", ids, waiting)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// One more is refused at once rather than held.
	wantErr(t, do(t, s, "GET", dl(id)+"?timeout_ms=30000", alice.Token, nil), 429, "M_LIMIT_EXCEEDED")
	// Without waiting it is the usual answer.
	wantErr(t, do(t, s, "GET", dl(id)+"?timeout_ms=0", alice.Token, nil), 504, "M_NOT_YET_UPLOADED")

	start := time.Now()
	if r := do(t, s, "PUT", "/_matrix/media/v3/upload/localhost/"+id, alice.Token, strings.NewReader("at last"), "Content-Type", "text/plain"); r.Status != 200 {
		t.Fatalf("PUT: %d %s", r.Status, r.Body)
	}
	wg.Wait()
	close(got)
	for r := range got {
		if r.Status != 200 || string(r.Body) != "at last" {
			t.Fatalf("waiting download: %d %q", r.Status, r.Body)
		}
	}
	t.Logf("%d waiting downloads served %v after the upload", media.MaxWaitersPerMedia, time.Since(start).Round(time.Millisecond))
	if ids, waiting := s.HS.Media.WaitingDownloads(); ids != 0 || waiting != 0 {
		t.Fatalf("after the upload: %d media IDs, %d downloads still registered", ids, waiting)
	}
}
