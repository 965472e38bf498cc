package clientapi_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"conclave/internal/config"
	"conclave/internal/homeserver/hstest"
)

// A device's last_seen_ts and last_seen_ip follow its requests, not only
// its sign-in: that is how a user tells a session still in use (a stolen
// phone) from one left behind. A device is written at most every two
// minutes unless its address changes, and the flush loop writes what is
// due without being asked.
func TestLastSeenFollowsRequests(t *testing.T) {
	s := hstest.Start(t, func(c *config.Config) { c.TrustedProxies = "127.0.0.0/8" })
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	s.HS.Accounts.SetClock(clock)

	r := registerVia(t, s, "198.51.100.1", "roamer")
	if r.Status != 200 {
		t.Fatalf("register: %d %s", r.Status, r.Body)
	}
	token, device := r.Str("access_token"), r.Str("device_id")
	// Read through another session of the user, whose own requests are
	// not the device's.
	l := doVia(t, s, "198.51.100.1", "POST", acV3+"/login", "", map[string]any{"type": "m.login.password", "user": "roamer", "password": "pw-roamer"})
	if l.Status != 200 {
		t.Fatalf("login: %d %s", l.Status, l.Body)
	}
	observer := l.Str("access_token")
	seen := func() (string, int64) {
		t.Helper()
		d := doVia(t, s, "198.51.100.1", "GET", acV3+"/devices/"+device, observer, nil)
		ts, _ := d.JSON["last_seen_ts"].(float64)
		return d.Str("last_seen_ip"), int64(ts)
	}
	flush := func() {
		t.Helper()
		if err := s.HS.Accounts.FlushSeen(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	want := func(what, ip string, ts time.Time) {
		t.Helper()
		gotIP, gotTS := seen()
		if gotIP != ip || gotTS != ts.UnixMilli() {
			t.Fatalf("%s: last seen %s at %d, want %s at %d", what, gotIP, gotTS, ip, ts.UnixMilli())
		}
	}
	want("after signing in", "198.51.100.1", clock())

	// Three minutes on, from another network.
	advance(3 * time.Minute)
	moved := clock()
	doVia(t, s, "203.0.113.9", "GET", acV3+"/account/whoami", token, nil)
	flush()
	want("after a request from elsewhere", "203.0.113.9", moved)

	// Again within two minutes from there: not written again.
	advance(30 * time.Second)
	doVia(t, s, "203.0.113.9", "GET", acV3+"/account/whoami", token, nil)
	flush()
	want("within two minutes", "203.0.113.9", moved)

	// Within two minutes from a new address: written at once.
	advance(10 * time.Second)
	again := clock()
	doVia(t, s, "192.0.2.44", "GET", acV3+"/account/whoami", token, nil)
	flush()
	want("from a new address", "192.0.2.44", again)

	// Nobody flushes: the server's loop writes it within seconds.
	advance(3 * time.Minute)
	later := clock()
	doVia(t, s, "192.0.2.45", "GET", acV3+"/account/whoami", token, nil)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ip, ts := seen()
		if ip == "192.0.2.45" && ts == later.UnixMilli() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the flush loop never wrote the sighting: last seen %s at %d", ip, ts)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
