package pushsender_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"conclave/internal/config"
	"conclave/internal/homeserver/hstest"
	"conclave/internal/outbound"
	"conclave/internal/pushsender"
	"conclave/internal/tlsutil"
	"conclave/internal/tlsutil/tlstest"
)

// gateway is a push gateway started by the test: HTTPS with a certificate
// of the test CA, recording every notification, failing or rejecting on
// demand.
type gateway struct {
	t   *testing.T
	srv *httptest.Server
	url string

	mu       sync.Mutex
	got      []map[string]any // accepted notifications
	failNext int              // answer 500 to this many requests
	reject   string           // answer rejected:[reject] for this pushkey
	failed   int
}

func startGateway(t *testing.T, ca *tlstest.CA) *gateway {
	g := &gateway{t: t}
	cert, err := tlsutil.Issue(ca.Cert, ca.Key, "localhost", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	g.srv = httptest.NewUnstartedServer(http.HandlerFunc(g.serve))
	g.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	g.srv.StartTLS()
	t.Cleanup(g.srv.Close)
	_, port, _ := net.SplitHostPort(g.srv.Listener.Addr().String())
	g.url = "https://localhost:" + port + "/_matrix/push/v1/notify"
	return g
}

func (g *gateway) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != "POST" || r.URL.Path != "/_matrix/push/v1/notify" || r.Header.Get("Content-Type") != "application/json" {
		g.t.Errorf("gateway: %s %s %q", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
	}
	body, _ := io.ReadAll(r.Body)
	var n struct {
		Notification map[string]any `json:"notification"`
	}
	if err := json.Unmarshal(body, &n); err != nil || n.Notification == nil {
		g.t.Errorf("gateway: body %s", body)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.failNext > 0 {
		g.failNext--
		g.failed++
		http.Error(w, "down", http.StatusInternalServerError)
		return
	}
	rejected := []string{}
	for _, d := range n.Notification["devices"].([]any) {
		if d.(map[string]any)["pushkey"] == g.reject {
			rejected = append(rejected, g.reject)
		}
	}
	g.got = append(g.got, n.Notification)
	json.NewEncoder(w).Encode(map[string]any{"rejected": rejected})
}

// wait waits until the gateway accepted n notifications and returns them.
func (g *gateway) wait(n int) []map[string]any {
	g.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		g.mu.Lock()
		got := slices.Clone(g.got)
		g.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("gateway got %d notifications, want %d: %v", len(got), n, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPushGateway: a gateway started in the test receives, over HTTPS
// trusted through the test CA, a notification for each invite, message,
// mention and call, every field as the Push Gateway API defines it in both
// formats; a failing gateway is retried without losing or repeating
// anything; a rejected pushkey's pusher is removed.
func TestPushGateway(t *testing.T) {
	ca := tlstest.NewCA(t, tlstest.ECPKCS8)
	g := startGateway(t, ca)
	s := hstest.Start(t, func(c *config.Config) {
		c.TLSCACert, c.TLSCAKey = ca.CertFile, ca.KeyFile
		c.PushAllowPrivate = true
	})
	alice := s.Register(t, "alice")
	bob := s.Register(t, "bob")
	v3 := "/_matrix/client/v3"
	setPusher := func(key, format string) {
		data := map[string]any{"url": g.url, "custom": "kept"}
		if format != "" {
			data["format"] = format
		}
		s.MustOK(t, "POST", v3+"/pushers/set", bob.Token, map[string]any{"pushkey": key, "kind": "http", "app_id": "org.example.app",
			"app_display_name": "App", "device_display_name": "Phone", "lang": "en", "data": data})
	}
	setPusher("full-key", "")
	setPusher("short-key", "event_id_only")
	// An HTTP URL or another path is refused (spec: HTTPS, /_matrix/push/v1/notify).
	for _, bad := range []string{"http://localhost/_matrix/push/v1/notify", "https://localhost/notify"} {
		r := s.Do(t, "POST", v3+"/pushers/set", bob.Token, map[string]any{"pushkey": "x", "kind": "http", "app_id": "a",
			"app_display_name": "A", "device_display_name": "D", "lang": "en", "data": map[string]any{"url": bad}})
		if r.Status != 400 || r.Errcode() != "M_INVALID_PARAM" {
			t.Fatalf("pusher URL %s: %d %s", bad, r.Status, r.Body)
		}
	}

	roomID := s.MustOK(t, "POST", v3+"/createRoom", alice.Token, map[string]any{"name": "Pushy", "invite": []string{bob.UserID}}).Str("room_id")
	g.wait(2) // the invite, to both pushers
	s.MustOK(t, "POST", hstest.Path("/join/%s", roomID), bob.Token, map[string]any{})
	msg := func(txn string, content map[string]any) string {
		return s.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/%s", roomID, txn), alice.Token, content).Str("event_id")
	}
	plain := msg("1", map[string]any{"msgtype": "m.text", "body": "hello"})
	mention := msg("2", map[string]any{"msgtype": "m.text", "body": "hi", "m.mentions": map[string]any{"user_ids": []string{bob.UserID}}})
	call := s.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.call.invite/3", roomID), alice.Token,
		map[string]any{"call_id": "c", "lifetime": 60000, "version": "1", "offer": map[string]any{"type": "offer", "sdp": "x"}}).Str("event_id")
	got := g.wait(8)

	byKey := map[string][]map[string]any{}
	for _, n := range got {
		devs := n["devices"].([]any)
		if len(devs) != 1 {
			t.Fatalf("devices: %v", n)
		}
		d := devs[0].(map[string]any)
		if d["app_id"] != "org.example.app" || d["pushkey_ts"].(float64) <= 0 || d["data"].(map[string]any)["custom"] != "kept" || d["data"].(map[string]any)["url"] != nil {
			t.Fatalf("device: %v", d)
		}
		if _, ok := d["tweaks"].(map[string]any); !ok {
			t.Fatalf("tweaks: %v", d)
		}
		if n["counts"].(map[string]any)["unread"] == nil || n["room_id"] != roomID {
			t.Fatalf("counts or room: %v", n)
		}
		key := d["pushkey"].(string)
		byKey[key] = append(byKey[key], n)
	}
	wantIDs := []string{"", plain, mention, call}
	for key, ns := range byKey {
		if len(ns) != 4 {
			t.Fatalf("%s got %d notifications: %v", key, len(ns), ns)
		}
		for i, n := range ns {
			if i > 0 && n["event_id"] != wantIDs[i] {
				t.Errorf("%s notification %d: event %v, want %s (in order, once)", key, i, n["event_id"], wantIDs[i])
			}
			_, hasType := n["type"]
			_, hasContent := n["content"]
			if key == "short-key" && (hasType || hasContent || n["sender"] != nil) {
				t.Errorf("event_id_only carries the event: %v", n)
			}
			if key == "full-key" && (!hasType || !hasContent || n["sender"] != alice.UserID || n["room_name"] != "Pushy") {
				t.Errorf("full format lacks the event: %v", n)
			}
		}
		tw := func(i int) map[string]any {
			return ns[i]["devices"].([]any)[0].(map[string]any)["tweaks"].(map[string]any)
		}
		// The invite: the user is its target; it rings (sound) — high priority.
		if key == "full-key" && (ns[0]["type"] != "m.room.member" || ns[0]["user_is_target"] != true || ns[0]["membership"] != "invite") {
			t.Errorf("invite: %v", ns[0])
		}
		if ns[0]["prio"] != "high" || tw(0)["sound"] != "default" {
			t.Errorf("invite prio/tweaks: %v", ns[0])
		}
		// A plain message in a room of two: room_one_to_one, with a sound.
		if ns[1]["prio"] != "high" || tw(1)["sound"] != "default" || tw(1)["highlight"] != nil {
			t.Errorf("message: %v", ns[1])
		}
		if tw(2)["highlight"] != true || ns[2]["prio"] != "high" {
			t.Errorf("mention: %v", ns[2])
		}
		if tw(3)["sound"] != "ring" {
			t.Errorf("call: %v", ns[3])
		}
		if key == "full-key" && ns[2]["content"].(map[string]any)["body"] != "hi" {
			t.Errorf("content: %v", ns[2])
		}
	}

	// The gateway fails twice: retried, then everything arrives once, in order.
	g.mu.Lock()
	g.failNext = 2
	g.mu.Unlock()
	m4 := msg("4", map[string]any{"msgtype": "m.text", "body": "after the outage"})
	m5 := msg("5", map[string]any{"msgtype": "m.text", "body": "and more"})
	got = g.wait(12)
	var after []string
	for _, n := range got[8:] {
		after = append(after, n["event_id"].(string))
	}
	slices.Sort(after)
	want := []string{m4, m4, m5, m5}
	slices.Sort(want)
	if !slices.Equal(after, want) || g.failed != 2 {
		t.Fatalf("after the outage: %v (failed %d), want %v", after, g.failed, want)
	}

	// A rejected pushkey's pusher is removed; the other one stays.
	g.mu.Lock()
	g.reject = "short-key"
	g.mu.Unlock()
	msg("6", map[string]any{"msgtype": "m.text", "body": "rejected"})
	g.wait(14)
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := s.MustOK(t, "GET", v3+"/pushers", bob.Token, nil)
		ps := r.JSON["pushers"].([]any)
		if len(ps) == 1 && ps[0].(map[string]any)["pushkey"] == "full-key" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pushers after the rejection: %s", r.Body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPushSurvivesRestart: notifications a gateway could not take before
// the server stopped are delivered, once each and in order, by the server
// started again on the same database.
func TestPushSurvivesRestart(t *testing.T) {
	ca := tlstest.NewCA(t, tlstest.ECPKCS8)
	g := startGateway(t, ca)
	s := hstest.Start(t, func(c *config.Config) {
		c.TLSCACert, c.TLSCAKey = ca.CertFile, ca.KeyFile
		c.PushAllowPrivate = true
	})
	alice := s.Register(t, "alice")
	bob := s.Register(t, "bob")
	v3 := "/_matrix/client/v3"
	s.MustOK(t, "POST", v3+"/pushers/set", bob.Token, map[string]any{"pushkey": "k", "kind": "http", "app_id": "a",
		"app_display_name": "A", "device_display_name": "D", "lang": "en", "data": map[string]any{"url": g.url, "format": "event_id_only"}})
	roomID := s.MustOK(t, "POST", v3+"/createRoom", alice.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	s.MustOK(t, "POST", hstest.Path("/join/%s", roomID), bob.Token, map[string]any{})
	g.mu.Lock()
	g.failNext = 1 << 30 // down
	g.mu.Unlock()
	var ids []string
	for i := 0; i < 3; i++ {
		ids = append(ids, s.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/%s", roomID, strconv.Itoa(i)), alice.Token,
			map[string]any{"msgtype": "m.text", "body": "m" + strconv.Itoa(i)}).Str("event_id"))
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		g.mu.Lock()
		failed := g.failed
		g.mu.Unlock()
		if failed > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the gateway was never tried")
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.Stop()
	g.mu.Lock()
	g.failNext = 0 // up again
	g.mu.Unlock()
	s2 := hstest.StartConfig(t, s.Config)
	g.wait(3)
	// One more message: a pusher delivers in order, so any repeat of the
	// first three would arrive before it.
	ids = append(ids, s2.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/after", roomID), alice.Token,
		map[string]any{"msgtype": "m.text", "body": "after"}).Str("event_id"))
	got := g.wait(4)
	var sent []string
	for _, n := range got {
		sent = append(sent, n["event_id"].(string))
	}
	if !slices.Equal(sent, ids) {
		t.Fatalf("after the restart the gateway got %v, want %v", sent, ids)
	}
}

// TestSendersShareOnePusherOnce: several senders on one database (the
// server's own and two more, as several processes would run) deliver each
// notification once, in order: a pusher is claimed by one at a time.
func TestSendersShareOnePusherOnce(t *testing.T) {
	ca := tlstest.NewCA(t, tlstest.ECPKCS8)
	g := startGateway(t, ca)
	s := hstest.Start(t, func(c *config.Config) {
		c.TLSCACert, c.TLSCAKey = ca.CertFile, ca.KeyFile
		c.PushAllowPrivate = true
	})
	alice := s.Register(t, "alice")
	bob := s.Register(t, "bob")
	v3 := "/_matrix/client/v3"
	s.MustOK(t, "POST", v3+"/pushers/set", bob.Token, map[string]any{"pushkey": "k", "kind": "http", "app_id": "a",
		"app_display_name": "A", "device_display_name": "D", "lang": "en", "data": map[string]any{"url": g.url, "format": "event_id_only"}})
	roomID := s.MustOK(t, "POST", v3+"/createRoom", alice.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	s.MustOK(t, "POST", hstest.Path("/join/%s", roomID), bob.Token, map[string]any{})

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	client := outbound.New(outbound.Config{ExtraCAs: []*x509.Certificate{ca.Cert}, AllowPrivate: true}).HTTP
	for _, owner := range []string{"other-1", "other-2"} {
		snd := pushsender.New(s.HS.Store, pushsender.Options{HTTP: client, Owner: owner, Tick: 10 * time.Millisecond})
		wg.Add(1)
		go func() { defer wg.Done(); snd.Run(ctx) }()
	}
	var ids []string
	for i := 0; i < 20; i++ {
		ids = append(ids, s.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/%s", roomID, strconv.Itoa(i)), alice.Token,
			map[string]any{"msgtype": "m.text", "body": "m" + strconv.Itoa(i)}).Str("event_id"))
	}
	g.wait(20)
	ids = append(ids, s.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/last", roomID), alice.Token,
		map[string]any{"msgtype": "m.text", "body": "last"}).Str("event_id"))
	got := g.wait(21)
	var sent []string
	for _, n := range got {
		sent = append(sent, n["event_id"].(string))
	}
	if !slices.Equal(sent, ids) {
		t.Fatalf("the gateway got %v, want %v (each once, in order)", sent, ids)
	}
}
