package crashtest

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"conclave/internal/homeserver/hstest"
	"conclave/internal/store/storetest/pgtest"
	"conclave/internal/tlsutil"
	"conclave/internal/tlsutil/tlstest"
)

// TestPushAcrossKill9: a pusher's notifications survive SIGKILLs of the
// server while messages keep coming: every acknowledged message reaches the
// push gateway, in order; a notification is sent twice only when the kill
// fell between the gateway's answer and the cursor's update (at least once:
// at most one repeat per kill).
func TestPushAcrossKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a real server")
	}
	ca := tlstest.NewCA(t, tlstest.ECPKCS8)
	cert, err := tlsutil.Issue(ca.Cert, ca.Key, "localhost", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	gw := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var n struct {
			Notification struct {
				EventID string `json:"event_id"`
			} `json:"notification"`
		}
		json.Unmarshal(body, &n)
		mu.Lock()
		got = append(got, n.Notification.EventID)
		mu.Unlock()
		w.Write([]byte(`{"rejected":[]}`))
	}))
	gw.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	gw.StartTLS()
	defer gw.Close()
	_, port, _ := net.SplitHostPort(gw.Listener.Addr().String())

	h := &harness{t: t, bin: hstest.BuildBinary(t), dataDir: t.TempDir(),
		client: &http.Client{Timeout: 15 * time.Second},
		extra:  []string{"--tls-ca-cert", ca.CertFile, "--tls-ca-key", ca.KeyFile, "--push-allow-private-addresses"}}
	if os.Getenv(hstest.EnvDatabase) == "postgres" {
		h.dsn = pgtest.NewDatabase(t)
	}
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 9))
	t.Logf("kill timing seed %d", seed)
	p := h.start()
	for _, name := range []string{"alice", "bob"} {
		h.must("POST", "/_matrix/client/v3/register", "", map[string]any{"username": name, "password": "crash-test-pw-" + name,
			"auth": map[string]string{"type": "m.login.dummy"}})
	}
	alice, bob := h.login("alice"), h.login("bob")
	h.must("POST", "/_matrix/client/v3/pushers/set", bob.token, map[string]any{"pushkey": "k", "kind": "http", "app_id": "a",
		"app_display_name": "A", "device_display_name": "D", "lang": "en",
		"data": map[string]any{"url": "https://localhost:" + port + "/_matrix/push/v1/notify", "format": "event_id_only"}})
	roomID := h.must("POST", "/_matrix/client/v3/createRoom", alice.token, map[string]any{"preset": "public_chat"})["room_id"].(string)
	h.must("POST", "/_matrix/client/v3/join/"+esc(roomID), bob.token, map[string]any{})

	const kills = 6
	var acked []string
	n := 0
	for cycle := 0; cycle < kills; cycle++ {
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				n++
				st, out, err := h.do("PUT", "/_matrix/client/v3/rooms/"+esc(roomID)+"/send/m.room.message/t"+strconv.Itoa(n), alice.token,
					map[string]any{"msgtype": "m.text", "body": "m" + strconv.Itoa(n)})
				if err != nil {
					return // killed
				}
				if st == 200 {
					acked = append(acked, out["event_id"].(string))
				}
			}
		}()
		time.Sleep(time.Duration(50+rng.IntN(250)) * time.Millisecond) // when to kill: random, not a wait for a condition
		p.kill(t)
		<-done
		p = h.start()
	}
	// Everything acknowledged reaches the gateway.
	want := map[string]bool{}
	for _, id := range acked {
		want[id] = true
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		mu.Lock()
		seen := map[string]int{}
		for _, id := range got {
			seen[id]++
		}
		total := len(got)
		mu.Unlock()
		missing := 0
		for id := range want {
			if seen[id] == 0 {
				missing++
			}
		}
		if missing == 0 {
			dups := total - len(seen)
			t.Logf("%d messages acknowledged across %d kills; %d notifications, %d repeated", len(acked), kills, total, dups)
			if dups > kills {
				t.Fatalf("%d notifications sent twice across %d kills", dups, kills)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d acknowledged messages never reached the gateway", missing, len(want))
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.kill(t)
	if len(h.bad) > 0 {
		t.Fatalf("server logged: %v", h.bad)
	}
}
