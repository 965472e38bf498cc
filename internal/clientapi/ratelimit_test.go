package clientapi_test

// Rate limits behind a reverse proxy, and the per-user limits on the
// expensive endpoints (issue 17, "Rate limits").

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"

	"conclave/internal/accounts"
	"conclave/internal/config"
	"conclave/internal/homeserver/hstest"
	"conclave/internal/room"
)

// doVia sends a request as a client behind a proxy that reports it in
// X-Forwarded-For (xff "" sends no header).
func doVia(t *testing.T, s *hstest.Server, xff, method, path, token string, body any) *hstest.Response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	out := &hstest.Response{Status: res.StatusCode, Body: data}
	json.Unmarshal(data, &out.JSON)
	return out
}

func registerVia(t *testing.T, s *hstest.Server, xff, name string) *hstest.Response {
	t.Helper()
	return doVia(t, s, xff, "POST", acV3+"/register", "", map[string]any{"username": name, "password": "pw-" + name, "auth": dummy()})
}

func want429(t *testing.T, r *hstest.Response, what string) {
	t.Helper()
	if r.Status != 429 || r.Errcode() != "M_LIMIT_EXCEEDED" {
		t.Fatalf("%s: want 429 M_LIMIT_EXCEEDED, got %d %s", what, r.Status, r.Body)
	}
	if ms, _ := r.JSON["retry_after_ms"].(float64); ms < 1 {
		t.Fatalf("%s: 429 without retry_after_ms: %s", what, r.Body)
	}
}

// Behind a trusted proxy each client has its own registration/login bucket:
// one client spending its own does not lock out another behind the same
// proxy. Addresses a client writes to the left of what the proxy appended
// are not believed.
func TestTrustedProxySeparatesClients(t *testing.T) {
	s := hstest.Start(t, func(c *config.Config) {
		c.RateLimits = true
		c.LoginRatePerSecond, c.LoginRateBurst = 0.001, 2
		c.TrustedProxies = "127.0.0.1, 10.0.0.0/8" // the test client connects from 127.0.0.1
	})
	for i := range 2 {
		if r := registerVia(t, s, "203.0.113.1", fmt.Sprint("a", i)); r.Status != 200 {
			t.Fatalf("register %d: %d %s", i, r.Status, r.Body)
		}
	}
	want429(t, registerVia(t, s, "203.0.113.1", "a2"), "third registration of client A")
	// Client B, behind the same proxy, is not locked out by A.
	if r := registerVia(t, s, "203.0.113.2", "b0"); r.Status != 200 {
		t.Fatalf("client B locked out by client A: %d %s", r.Status, r.Body)
	}
	// A cannot escape its bucket by writing its own X-Forwarded-For entry:
	// the right-most untrusted address (appended by the proxy) counts; a
	// second trusted proxy hop in between is skipped.
	want429(t, registerVia(t, s, "198.51.100.9, 203.0.113.1", "a3"), "A with a spoofed left-most entry")
	want429(t, registerVia(t, s, "198.51.100.9, 203.0.113.1, 10.1.2.3", "a4"), "A through two trusted proxies")
	// Login shares the per-address bucket.
	want429(t, doVia(t, s, "203.0.113.1", "POST", acV3+"/login", "", map[string]any{"type": "m.login.password", "user": "b0", "password": "pw-b0"}), "login of client A")
}

// A peer that is not a trusted proxy cannot choose its address with
// X-Forwarded-For: every header value lands in the peer's bucket.
func TestUntrustedForwardedForIgnored(t *testing.T) {
	s := hstest.Start(t, func(c *config.Config) {
		c.RateLimits = true
		c.LoginRatePerSecond, c.LoginRateBurst = 0.001, 2
		c.TrustedProxies = "10.0.0.0/8" // not the test client's 127.0.0.1
	})
	registerVia(t, s, "203.0.113.1", "u0")
	registerVia(t, s, "203.0.113.2", "u1")
	want429(t, registerVia(t, s, "203.0.113.3", "u2"), "untrusted peer with a fresh X-Forwarded-For")
	// Without any trusted proxy the header is ignored too.
	s2 := hstest.Start(t, func(c *config.Config) { c.RateLimits = true; c.LoginRatePerSecond, c.LoginRateBurst = 0.001, 1 })
	registerVia(t, s2, "203.0.113.1", "v0")
	want429(t, registerVia(t, s2, "203.0.113.2", "v1"), "no trusted proxies")
}

// last_seen_ip of a device records the client behind the proxy, not the
// proxy; an untrusted peer's header is not recorded.
func TestLastSeenIPBehindProxy(t *testing.T) {
	s := hstest.Start(t, func(c *config.Config) { c.TrustedProxies = "127.0.0.0/8" })
	r := registerVia(t, s, "198.51.100.7", "seen")
	if r.Status != 200 {
		t.Fatalf("register: %d %s", r.Status, r.Body)
	}
	dev := s.MustOK(t, "GET", acV3+"/devices/"+r.Str("device_id"), r.Str("access_token"), nil)
	if got := dev.Str("last_seen_ip"); got != "198.51.100.7" {
		t.Fatalf("last_seen_ip after registering behind the proxy = %q, want 198.51.100.7", got)
	}
	l := doVia(t, s, "2001:db8::5", "POST", acV3+"/login", "", map[string]any{"type": "m.login.password", "user": "seen", "password": "pw-seen"})
	if l.Status != 200 {
		t.Fatalf("login: %d %s", l.Status, l.Body)
	}
	dev = s.MustOK(t, "GET", acV3+"/devices/"+l.Str("device_id"), l.Str("access_token"), nil)
	if got := dev.Str("last_seen_ip"); got != "2001:db8::5" {
		t.Fatalf("last_seen_ip after logging in behind the proxy = %q, want 2001:db8::5", got)
	}

	direct := hstest.Start(t) // no trusted proxies
	r = registerVia(t, direct, "198.51.100.7", "direct")
	dev = direct.MustOK(t, "GET", acV3+"/devices/"+r.Str("device_id"), r.Str("access_token"), nil)
	if got := dev.Str("last_seen_ip"); got != "127.0.0.1" {
		t.Fatalf("last_seen_ip from an untrusted peer = %q, want the peer 127.0.0.1", got)
	}
}

// Each expensive endpoint answers 429 M_LIMIT_EXCEEDED with retry_after_ms
// once the user's burst is spent; another user is unaffected, and server
// admins are exempt.
func TestPerUserLimits(t *testing.T) {
	const burst = 3
	s := hstest.Start(t, func(c *config.Config) {
		c.RateLimits = true
		c.LoginRatePerSecond, c.LoginRateBurst = 100, 1000 // registration is not under test
		for _, r := range []*float64{&c.EventRatePerSecond, &c.CreateRoomRatePerSecond, &c.InviteRatePerSecond, &c.SearchRatePerSecond, &c.UserDirectoryRatePerSecond, &c.FullSyncRatePerSecond} {
			*r = 0.001
		}
		for _, b := range []*int{&c.EventRateBurst, &c.CreateRoomRateBurst, &c.InviteRateBurst, &c.SearchRateBurst, &c.UserDirectoryRateBurst, &c.FullSyncRateBurst} {
			*b = burst
		}
	})
	// Each case gets a fresh user, creator of a room of their own (made
	// through the room service: no HTTP, no token spent), who repeats one
	// request.
	type call func(u *hstest.User, roomID string, i int) *hstest.Response
	cases := []struct {
		name string
		do   call
	}{
		{"send", func(u *hstest.User, roomID string, i int) *hstest.Response {
			return s.Do(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/%s", roomID, fmt.Sprint("t", i)), u.Token, map[string]any{"msgtype": "m.text", "body": "x"})
		}},
		{"state", func(u *hstest.User, roomID string, i int) *hstest.Response {
			return s.Do(t, "PUT", hstest.Path("/rooms/%s/state/m.room.topic", roomID), u.Token, map[string]any{"topic": fmt.Sprint(i)})
		}},
		{"redact", func(u *hstest.User, roomID string, i int) *hstest.Response {
			target := addMessage(t, s, roomID, u.UserID)
			return s.Do(t, "PUT", hstest.Path("/rooms/%s/redact/%s/%s", roomID, target, fmt.Sprint("r", i)), u.Token, map[string]any{})
		}},
		{"createRoom", func(u *hstest.User, roomID string, i int) *hstest.Response {
			return s.Do(t, "POST", acV3+"/createRoom", u.Token, map[string]any{})
		}},
		{"invite", func(u *hstest.User, roomID string, i int) *hstest.Response {
			invitee := s.CreateUser(t, fmt.Sprintf("invitee%d", i))
			return s.Do(t, "POST", hstest.Path("/rooms/%s/invite", roomID), u.Token, map[string]any{"user_id": invitee.UserID})
		}},
		{"search", func(u *hstest.User, roomID string, i int) *hstest.Response {
			return s.Do(t, "POST", acV3+"/search", u.Token, map[string]any{"search_categories": map[string]any{"room_events": map[string]any{"search_term": "x"}}})
		}},
		{"user directory", func(u *hstest.User, roomID string, i int) *hstest.Response {
			return s.Do(t, "POST", acV3+"/user_directory/search", u.Token, map[string]any{"search_term": "user"})
		}},
		{"full_state sync", func(u *hstest.User, roomID string, i int) *hstest.Response {
			return s.Do(t, "GET", acV3+"/sync?full_state=true&timeout=0", u.Token, nil)
		}},
	}
	ownRoom := func(u *hstest.User) string {
		id, err := s.HS.Rooms.CreateRoom(t.Context(), &room.CreateRequest{Creator: u.UserID, Preset: "private_chat"})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	for n, c := range cases {
		u := s.Register(t, fmt.Sprint("user", n))
		roomID := ownRoom(u)
		for i := range burst {
			if r := c.do(u, roomID, i); r.Status != 200 {
				t.Fatalf("%s %d within the burst: %d %s", c.name, i, r.Status, r.Body)
			}
		}
		want429(t, c.do(u, roomID, burst), c.name+" after the burst")
		// Another user is not limited by this one.
		other := s.Register(t, fmt.Sprint("other", n))
		if r := c.do(other, ownRoom(other), burst+1); r.Status != 200 {
			t.Fatalf("%s of another user after the first was limited: %d %s", c.name, r.Status, r.Body)
		}
	}
	// Incremental syncs are not limited; initial syncs are.
	u := s.Register(t, "syncer")
	next := s.MustOK(t, "GET", acV3+"/sync?timeout=0", u.Token, nil).Str("next_batch")
	for range burst - 1 {
		s.MustOK(t, "GET", acV3+"/sync?timeout=0", u.Token, nil)
	}
	want429(t, s.Do(t, "GET", acV3+"/sync?timeout=0", u.Token, nil), "initial sync after the burst")
	for range 2 * burst {
		s.MustOK(t, "GET", acV3+"/sync?timeout=0&since="+next, u.Token, nil)
	}
	// Server admins are exempt.
	admin := registerAdmin(t, s, "boss")
	adminRoom := ownRoom(admin)
	for i := range 3 * burst {
		s.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/%s", adminRoom, fmt.Sprint("a", i)), admin.Token, map[string]any{"msgtype": "m.text", "body": "x"})
	}
}

// registerAdmin creates a server admin through the shared-secret API.
func registerAdmin(t *testing.T, s *hstest.Server, name string) *hstest.User {
	t.Helper()
	const path = "/_synapse/admin/v1/register"
	n := s.MustOK(t, "GET", path, "", nil).Str("nonce")
	mac := accounts.SharedSecretMAC("test-shared-secret", n, name, "pw", true, nil)
	r := s.MustOK(t, "POST", path, "", map[string]any{"nonce": n, "username": name, "password": "pw", "admin": true, "mac": mac})
	return &hstest.User{UserID: r.Str("user_id"), DeviceID: r.Str("device_id"), Token: r.Str("access_token")}
}
