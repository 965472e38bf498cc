package hostile

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"conclave/internal/config"
	"conclave/internal/homeserver/hstest"
)

// Per-device /sync concurrency: beyond max_syncs_per_device, 429
// M_LIMIT_EXCEEDED with retry_after_ms; other devices are not affected, and
// the slots free up when the long-polls end.
func TestSyncConcurrencyPerDevice(t *testing.T) {
	s := hstest.Start(t, func(c *config.Config) { c.MaxSyncsPerDevice = 2 })
	alice := s.CreateUser(t, "alice")
	other := s.CreateUser(t, "bob")
	roomID := s.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{}).Str("room_id")
	since := s.MustOK(t, "GET", "/_matrix/client/v3/sync", alice.Token, nil).Str("next_batch")
	// Let changes still on their way settle (on PostgreSQL, presence and
	// typing arrive through the cluster bus just after they happen): the
	// long-polls below must find nothing new, or they return at once.
	for range 50 {
		next := s.MustOK(t, "GET", "/_matrix/client/v3/sync?timeout=200&since="+url.QueryEscape(since), alice.Token, nil).Str("next_batch")
		if next == since {
			break
		}
		since = next
	}
	poll := "/_matrix/client/v3/sync?timeout=60000&since=" + url.QueryEscape(since)
	done := make(chan int, 2)
	for range 2 {
		go func() {
			// A long-poll that arrives while one of the probes below holds
			// the other slot is refused like any third sync: it tries
			// again. (This was the test's flake: the second long-poll was
			// refused, so the probes never met two busy slots.)
			for {
				r := s.Do(t, "GET", poll, alice.Token, nil)
				if r.Status != http.StatusTooManyRequests {
					done <- r.Status
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	// Once both long-polls hold their slots, a third is refused. (Until
	// then it may get through: it returns at once with timeout=0.)
	var refused *hstest.Response
	for range 500 {
		r := s.Do(t, "GET", "/_matrix/client/v3/sync?timeout=0&since="+url.QueryEscape(since), alice.Token, nil)
		if r.Status == 429 {
			refused = r
			break
		}
		if r.Status != 200 {
			t.Fatalf("sync: %d %s", r.Status, r.Body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if refused == nil || refused.Errcode() != "M_LIMIT_EXCEEDED" {
		t.Fatalf("a third concurrent /sync was never refused")
	}
	if ms, _ := refused.JSON["retry_after_ms"].(float64); ms < 1 {
		t.Fatalf("429 without retry_after_ms: %s", refused.Body)
	}
	// Another user's (or device's) sync is not limited by alice's.
	s.MustOK(t, "GET", "/_matrix/client/v3/sync?timeout=0", other.Token, nil)
	// A message wakes both long-polls; then alice can sync again.
	s.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/w", roomID), alice.Token, map[string]any{"msgtype": "m.text", "body": "wake"})
	for range 2 {
		if st := <-done; st != 200 {
			t.Fatalf("long-poll: %d", st)
		}
	}
	s.MustOK(t, "GET", "/_matrix/client/v3/sync?timeout=0&since="+url.QueryEscape(since), alice.Token, nil)
}

// A client that sends its headers too slowly is disconnected.
func TestSlowlorisHeaders(t *testing.T) {
	s := hstest.Start(t, func(c *config.Config) { c.ReadHeaderTimeout = config.Duration{Duration: 200 * time.Millisecond} })
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\nX-Slow: ")
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err = bufio.NewReader(conn).ReadByte()
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("slow client still connected: %v", err)
	}
}

// At most max_connections are served at once; the next waits until one
// closes. Idle connections do not hold a slot forever (read_header_timeout).
func TestConnectionLimit(t *testing.T) {
	s := hstest.Start(t, func(c *config.Config) {
		c.MaxConnections = 2
		c.ReadHeaderTimeout = config.Duration{Duration: 30 * time.Second}
	})
	addr := strings.TrimPrefix(s.URL, "http://")
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		// A byte makes sure the server has accepted (and counted) it.
		fmt.Fprint(c, "G")
		held = append(held, c)
	}
	got := make(chan int, 1)
	go func() {
		res, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Get(s.URL + "/_matrix/client/versions")
		if err != nil {
			got <- 0
			return
		}
		res.Body.Close()
		got <- res.StatusCode
	}()
	select {
	case st := <-got:
		t.Fatalf("a third connection was served while two were held (status %d)", st)
	case <-time.After(300 * time.Millisecond):
	}
	held[0].Close()
	if st := <-got; st != 200 {
		t.Fatalf("after a slot freed: status %d", st)
	}
	held[1].Close()
}

// Bodies, events and lists have bounds, each refused with a 4xx Matrix
// error, never a 500.
func TestBodyAndListLimits(t *testing.T) {
	s := hstest.Start(t, func(c *config.Config) { c.MaxUploadBytes = 1000 })
	alice := s.CreateUser(t, "alice")
	roomID := s.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{}).Str("room_id")
	big := strings.Repeat("x", int(s.Config.MaxRequestBytes))
	list := func(n int, f func(i int) string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = f(i)
		}
		return out
	}
	userMap := func(n int, v any) map[string]any {
		m := map[string]any{}
		for i := range n {
			m[fmt.Sprintf("@u%d:localhost", i)] = v
		}
		return m
	}
	cases := []struct {
		name, method, path string
		body               any
		status             int
		errcode            string
	}{
		{"body over max_request_bytes", "PUT", hstest.Path("/user/%s/account_data/x", alice.UserID), map[string]string{"a": big}, 413, "M_TOO_LARGE"},
		{"event over 64 KiB", "PUT", hstest.Path("/rooms/%s/send/m.room.message/big", roomID), map[string]string{"body": strings.Repeat("x", 70000)}, 413, "M_TOO_LARGE"},
		{"state event over 64 KiB", "PUT", hstest.Path("/rooms/%s/state/m.room.topic", roomID), map[string]string{"topic": strings.Repeat("x", 70000)}, 413, "M_TOO_LARGE"},
		{"JSON deeper than 64", "PUT", hstest.Path("/user/%s/account_data/x", alice.UserID), strings.Repeat(`{"a":`, 100) + "1" + strings.Repeat("}", 100), 400, "M_BAD_JSON"},
		{"media over max_upload_bytes", "POST", "/_matrix/media/v3/upload", strings.Repeat("x", 2000), 413, "M_TOO_LARGE"},
		{"101 invites", "POST", "/_matrix/client/v3/createRoom", map[string]any{"invite": list(101, func(i int) string { return fmt.Sprintf("@u%d:localhost", i) })}, 400, ""},
		{"101 initial_state", "POST", "/_matrix/client/v3/createRoom", map[string]any{"initial_state": func() []any {
			var out []any
			for i := range 101 {
				out = append(out, map[string]any{"type": "x", "state_key": fmt.Sprint(i), "content": map[string]any{}})
			}
			return out
		}()}, 400, ""},
		{"1001 devices to delete", "POST", "/_matrix/client/v3/delete_devices", map[string]any{"devices": list(1001, func(i int) string { return fmt.Sprint(i) })}, 400, "M_INVALID_PARAM"},
		{"10001 key claims", "POST", "/_matrix/client/v3/keys/claim", map[string]any{"one_time_keys": userMap(10001, map[string]string{"D": "signed_curve25519"})}, 400, ""},
		{"10001 users in a key query", "POST", "/_matrix/client/v3/keys/query", map[string]any{"device_keys": userMap(10001, []string{})}, 400, ""},
		{"10001 to-device recipients", "PUT", "/_matrix/client/v3/sendToDevice/m.x/t1", map[string]any{"messages": userMap(10001, map[string]any{"D": map[string]any{}})}, 400, ""},
		{"1001 one-time keys", "POST", "/_matrix/client/v3/keys/upload", map[string]any{"one_time_keys": func() map[string]any {
			m := map[string]any{}
			for i := range 1001 {
				m[fmt.Sprintf("signed_curve25519:K%d", i)] = map[string]any{"key": "k"}
			}
			return m
		}()}, 400, ""},
		{"filter list of 1001", "POST", hstest.Path("/user/%s/filter", alice.UserID), map[string]any{"room": map[string]any{"rooms": list(1001, func(i int) string { return fmt.Sprintf("!r%d:localhost", i) })}}, 400, ""},
		{"messages filter list of 1001", "GET", hstest.Path("/rooms/%s/messages", roomID) + "?dir=b&filter=" + url.QueryEscape(`{"types":[`+strings.Repeat(`"x",`, 1000)+`"x"]}`), nil, 400, "M_BAD_JSON"},
		{"search term over 255 bytes", "POST", "/_matrix/client/v3/user_directory/search", map[string]any{"search_term": strings.Repeat("x", 10000)}, 400, ""},
	}
	for _, c := range cases {
		r := s.Do(t, c.method, c.path, alice.Token, c.body)
		if r.Status != c.status || (c.errcode != "" && r.Errcode() != c.errcode) || r.Errcode() == "" {
			t.Errorf("%s: want %d %s, got %d %s", c.name, c.status, c.errcode, r.Status, trunc(string(r.Body), 300))
		}
	}
	// Query limits are capped, never refused or unbounded.
	for _, p := range []string{
		hstest.Path("/rooms/%s/messages", roomID) + "?dir=b&limit=2147483647000",
		hstest.Path("/rooms/%s/context/%s", roomID, "$nope") + "?limit=99999999",
		"/_matrix/client/v3/publicRooms?limit=99999999",
	} {
		if r := s.Do(t, "GET", p, alice.Token, nil); r.Status >= 500 || (r.Status == 400 && strings.Contains(string(r.Body), "limit")) {
			t.Errorf("GET %s: %d %s", p, r.Status, r.Body)
		}
	}
}
