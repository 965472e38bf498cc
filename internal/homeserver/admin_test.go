package homeserver_test

import (
	"bufio"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"conclave/internal/config"
	"conclave/internal/homeserver/hstest"
)

func get(t *testing.T, url string) (int, http.Header, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, string(b)
}

// scrape returns the admin listener's metrics as "name{labels}" → value.
func scrape(t *testing.T, s *hstest.Server) (map[string]float64, string) {
	t.Helper()
	status, h, body := get(t, s.AdminURL+"/metrics")
	if status != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %d %s", status, h.Get("Content-Type"))
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad exposition line %q", line)
		}
		out[line[:i]] = v
	}
	return out, body
}

func wantMetric(t *testing.T, m map[string]float64, series string, want float64) {
	t.Helper()
	if got, ok := m[series]; !ok || got != want {
		t.Errorf("%s = %v (present %v), want %v", series, got, ok, want)
	}
}

func wantUnrecognized(t *testing.T, s *hstest.Server, path string) {
	t.Helper()
	r := s.Do(t, "GET", path, "", nil)
	if r.Status != 404 || r.Errcode() != "M_UNRECOGNIZED" {
		t.Errorf("client listener GET %s: %d %s, want 404 M_UNRECOGNIZED", path, r.Status, r.Body)
	}
}

func TestAdminListenerMetrics(t *testing.T) {
	s := hstest.Start(t, hstest.WithAdmin, func(c *config.Config) {
		// Logins are limited to a burst of one, refilling far slower than
		// the test runs: the second attempt is refused.
		c.RateLimits = true
		c.LoginRateBurst = 1
		c.LoginRatePerSecond = 0.001
	})
	if s.AdminURL == "" {
		t.Fatal("no admin listener")
	}
	alice := s.CreateUser(t, "alice")
	for range 3 {
		s.MustOK(t, "GET", "/_matrix/client/v3/account/whoami", alice.Token, nil)
	}
	s.MustOK(t, "GET", "/_matrix/client/r0/account/whoami", alice.Token, nil)
	s.MustOK(t, "GET", hstest.Path("/profile/%s", alice.UserID), "", nil)
	s.Do(t, "GET", "/_matrix/client/v3/no-such-endpoint-xyz", "", nil)
	s.Do(t, "BREW", "/_matrix/client/v3/account/whoami", alice.Token, nil)
	s.Do(t, "GET", "/_matrix/client/v3/account/whoami", "bad-token", nil)
	login := map[string]any{"type": "m.login.password", "identifier": map[string]string{"type": "m.id.user", "user": "alice"}, "password": "wrong"}
	if r := s.Do(t, "POST", "/_matrix/client/v3/login", "", login); r.Status != 403 {
		t.Fatalf("first login: %d %s", r.Status, r.Body)
	}
	if r := s.Do(t, "POST", "/_matrix/client/v3/login", "", login); r.Status != 429 {
		t.Fatalf("second login: %d %s", r.Status, r.Body)
	}
	roomID := s.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{}).Str("room_id")
	since := s.MustOK(t, "GET", "/_matrix/client/v3/sync", alice.Token, nil).Str("next_batch")
	up := s.Do(t, "POST", "/_matrix/media/v3/upload", alice.Token, "hello")
	if up.Status != 200 {
		t.Fatalf("upload: %d %s", up.Status, up.Body)
	}

	before, _ := scrape(t, s)
	events := before["conclave_events_persisted_total"]
	if events < 5 { // create, member, power levels, join rules, history visibility, …
		t.Errorf("events persisted %v after createRoom", events)
	}

	// A long-poll shows as waiting; a message wakes it.
	synced := make(chan *hstest.Response, 1)
	go func() {
		synced <- s.Do(t, "GET", "/_matrix/client/v3/sync?timeout=20000&since="+since, alice.Token, nil)
	}()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if m, _ := scrape(t, s); m["conclave_sync_waiting"] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the long-poll never showed as waiting")
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/t1", roomID), alice.Token, map[string]string{"msgtype": "m.text", "body": "hi"})
	if r := <-synced; r.Status != 200 {
		t.Fatalf("long-poll: %d %s", r.Status, r.Body)
	}

	m, body := scrape(t, s)
	wantMetric(t, m, `conclave_http_requests_total{code="2xx",method="GET",route="/_matrix/client/v3/account/whoami"}`, 3)
	wantMetric(t, m, `conclave_http_requests_total{code="2xx",method="GET",route="/_matrix/client/r0/account/whoami"}`, 1)
	wantMetric(t, m, `conclave_http_requests_total{code="4xx",method="GET",route="/_matrix/client/v3/account/whoami"}`, 1)
	wantMetric(t, m, `conclave_http_requests_total{code="2xx",method="GET",route="/_matrix/client/v3/profile/{userId}"}`, 1)
	wantMetric(t, m, `conclave_http_requests_total{code="4xx",method="GET",route="unmatched"}`, 1)
	wantMetric(t, m, `conclave_http_requests_total{code="4xx",method="OTHER",route="unmatched"}`, 1)
	wantMetric(t, m, `conclave_http_requests_total{code="4xx",method="POST",route="/_matrix/client/v3/login"}`, 2)
	wantMetric(t, m, `conclave_http_rate_limited_total{method="POST",route="/_matrix/client/v3/login"}`, 1)
	wantMetric(t, m, `conclave_http_request_duration_seconds_count{method="GET",route="/_matrix/client/v3/account/whoami"}`, 4)
	wantMetric(t, m, `conclave_http_request_duration_seconds_count{method="PUT",route="/_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}"}`, 1)
	wantMetric(t, m, `conclave_events_persisted_total`, events+1)
	wantMetric(t, m, `conclave_media_uploaded_bytes_total`, 5)
	wantMetric(t, m, `conclave_sync_waiting`, 0)
	// The /metrics scrapes themselves are on the admin listener: not counted.
	wantMetric(t, m, `conclave_http_requests_in_flight`, 0)
	if m["conclave_notifier_wakeups_total"] < 1 {
		t.Errorf("notifier wake-ups %v after waking a long-poll", m["conclave_notifier_wakeups_total"])
	}
	if s.Config.Database == "" {
		if m["conclave_store_group_commit_calls_count"] < 1 || m["conclave_store_group_commit_calls_sum"] < m["conclave_store_group_commit_calls_count"] {
			t.Errorf("group commit histogram: count %v sum %v", m["conclave_store_group_commit_calls_count"], m["conclave_store_group_commit_calls_sum"])
		}
	}
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_open_fds", "process_cpu_seconds_total"} {
		if _, ok := m[name]; !ok {
			t.Errorf("%s missing", name)
		}
	}
	// Labels are route patterns, never raw paths or client-chosen strings.
	for _, raw := range []string{"@alice", "no-such-endpoint", "BREW", "!" + strings.TrimPrefix(roomID, "!"), "m.room.message/t1"} {
		if strings.Contains(body, raw) {
			t.Errorf("exposition contains the raw request string %q", raw)
		}
	}
	// The admin listener is not for browsers: no CORS.
	if _, h, _ := get(t, s.AdminURL+"/metrics"); h.Get("Access-Control-Allow-Origin") != "" {
		t.Error("admin listener sends CORS headers")
	}
}

func TestAdminListenerPprof(t *testing.T) {
	s := hstest.Start(t, hstest.WithAdmin)
	status, _, body := get(t, s.AdminURL+"/debug/pprof/")
	if status != 200 || !strings.Contains(body, "goroutine") {
		t.Fatalf("/debug/pprof/: %d %.200s", status, body)
	}
	if status, _, body := get(t, s.AdminURL+"/debug/pprof/goroutine?debug=1"); status != 200 || !strings.Contains(body, "goroutine profile:") {
		t.Errorf("goroutine profile: %d %.200s", status, body)
	}
	if status, _, body := get(t, s.AdminURL+"/debug/pprof/heap"); status != 200 || len(body) == 0 {
		t.Errorf("heap profile: %d, %d bytes", status, len(body))
	}
	if status, h, body := get(t, s.AdminURL+"/debug/pprof/profile?seconds=1"); status != 200 || h.Get("Content-Type") != "application/octet-stream" || len(body) == 0 {
		t.Errorf("CPU profile: %d %s, %d bytes", status, h.Get("Content-Type"), len(body))
	}
	// The command line may hold secrets: not served.
	if status, _, _ := get(t, s.AdminURL+"/debug/pprof/cmdline"); status != 404 {
		t.Errorf("/debug/pprof/cmdline: %d, want 404", status)
	}
	if status, _, body := get(t, s.AdminURL+"/nothing-here"); status != 404 || !strings.Contains(body, "M_UNRECOGNIZED") {
		t.Errorf("unknown admin path: %d %s", status, body)
	}
	// The client listener serves neither metrics nor the profiler.
	for _, p := range []string{"/metrics", "/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/profile?seconds=1", "/debug/pprof/cmdline"} {
		wantUnrecognized(t, s, p)
	}
}

func TestAdminPprofOff(t *testing.T) {
	s := hstest.Start(t, hstest.WithAdmin, func(c *config.Config) { c.AdminPprof = false })
	if status, _, _ := get(t, s.AdminURL+"/debug/pprof/"); status != 404 {
		t.Errorf("/debug/pprof/ with admin_pprof off: %d", status)
	}
	if status, _, body := get(t, s.AdminURL+"/metrics"); status != 200 || !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics with admin_pprof off: %d", status)
	}
}

func TestNoAdminListenerByDefault(t *testing.T) {
	s := hstest.Start(t)
	if s.AdminURL != "" || s.HS.AdminAddr() != nil || s.HS.Metrics != nil {
		t.Fatalf("admin listener running without admin_listen: %q", s.AdminURL)
	}
	wantUnrecognized(t, s, "/metrics")
	wantUnrecognized(t, s, "/debug/pprof/")
}
