package fedtest

import (
	"context"
	"encoding/json"
	"net"
	"net/url"
	"strconv"
	"testing"
	"time"

	"conclave/internal/config"
	"conclave/internal/homeserver/hstest"
)

// hangingServer is a federation name whose address accepts connections and
// never answers (a server that is down in the worst way).
func hangingServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { <-done; c.Close() }()
		}
	}()
	return "localhost:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

func uploadOTK(t *testing.T, s *hstest.Server, u *hstest.User, id string) {
	t.Helper()
	s.MustOK(t, "POST", "/_matrix/client/v3/keys/upload", u.Token, map[string]any{"one_time_keys": map[string]any{"curve25519:" + id: "key-" + id}})
}

// /keys/query and /keys/claim for users on several servers: the servers are
// asked in parallel, one that never answers is reported in failures once
// the request's timeout has passed, and the others' answers are there.
func TestKeysFanOutWithServerDown(t *testing.T) {
	hang := hangingServer(t)
	hs := hstest.StartFederationEach(t, 2, func(i int, c *config.Config) {
		if i == 0 {
			c.FederationAllow = append(c.FederationAllow, hang)
		}
	})
	a, b := hs[0], hs[1]
	alice, bob := a.Register(t, "alice"), b.Register(t, "bob")
	ed := uploadNewKeys(t, b, bob)
	uploadOTK(t, b, bob, "1")
	ghost := "@ghost:" + hang

	start := time.Now()
	r := a.MustOK(t, "POST", "/_matrix/client/v3/keys/query", alice.Token, map[string]any{"timeout": 1000,
		"device_keys": map[string]any{bob.UserID: []string{}, ghost: []string{}}})
	var q struct {
		DeviceKeys map[string]map[string]struct {
			Keys map[string]string `json:"keys"`
		} `json:"device_keys"`
		Failures map[string]json.RawMessage `json:"failures"`
	}
	json.Unmarshal(r.Body, &q)
	if q.DeviceKeys[bob.UserID][bob.DeviceID].Keys["ed25519:"+bob.DeviceID] != ed || q.Failures[hang] == nil || q.Failures[b.ServerName] != nil {
		t.Fatalf("query: %s", r.Body)
	}
	// A failure bound, not a speed target: the request must not wait for
	// the hanging server beyond its timeout (plus slack for a loaded machine).
	if d := time.Since(start); d > 8*time.Second {
		t.Fatalf("the query took %s with a 1 s timeout", d)
	}

	r = a.MustOK(t, "POST", "/_matrix/client/v3/keys/claim", alice.Token, map[string]any{"timeout": 1000,
		"one_time_keys": map[string]any{bob.UserID: map[string]string{bob.DeviceID: "curve25519"}, ghost: map[string]string{"D": "curve25519"}}})
	var c struct {
		OneTimeKeys map[string]map[string]map[string]string `json:"one_time_keys"`
		Failures    map[string]json.RawMessage              `json:"failures"`
	}
	json.Unmarshal(r.Body, &c)
	if c.OneTimeKeys[bob.UserID][bob.DeviceID]["curve25519:1"] != "key-1" || c.Failures[hang] == nil {
		t.Fatalf("claim: %s", r.Body)
	}
	// Claimed once: gone from bob's server.
	r = a.MustOK(t, "POST", "/_matrix/client/v3/keys/claim", alice.Token, map[string]any{
		"one_time_keys": map[string]any{bob.UserID: map[string]string{bob.DeviceID: "curve25519"}}})
	if contains(r.Body, "key-1") {
		t.Fatalf("a one-time key was handed out twice: %s", r.Body)
	}
	// Other servers cannot claim or query through us for users not ours.
	raw, err := b.HS.FedClient.QueryKeys(context.Background(), a.ServerName, map[string][]string{bob.UserID: {}, alice.UserID: {}})
	if err != nil || contains(raw, bob.UserID) {
		t.Fatalf("a's /user/keys/query answered for another server's user: %s %v", raw, err)
	}
}

// A remote user's device list is cached while a local user shares a room
// with them: /keys/query answers from it when their server is down; once
// nobody here shares a room with them, the cache is dropped.
func TestRemoteDeviceListCached(t *testing.T) {
	hs := hstest.StartFederation(t, 2)
	a, b := hs[0], hs[1]
	alice, bob := a.Register(t, "alice"), b.Register(t, "bob")
	ed := uploadNewKeys(t, b, bob)
	roomID := createPublicRoom(t, a, alice)
	joinVia(t, b, bob, roomID, a.ServerName)
	waitJoined(t, a, alice, roomID, bob.UserID)
	mustQueryKeys(t, a, alice, bob, ed)
	ctx := context.Background()
	cached := func() bool {
		_, _, _, ok, err := a.HS.Store.RemoteDeviceList(ctx, bob.UserID)
		return err == nil && ok
	}
	waitUntil(t, "bob's list cached on a", cached)
	// An update travels as m.device_list_update and is applied to the cache.
	y := &dlSync{s: a, u: alice}
	y.once(t, 0)
	ed = uploadNewKeys(t, b, bob)
	y.until(t, "changed", bob.UserID)
	devs, _, _, _, _ := a.HS.Store.RemoteDeviceList(ctx, bob.UserID)
	if len(devs) != 1 || !contains(devs[0].Keys, ed) {
		t.Fatalf("cache after the update: %+v", devs)
	}
	// Updates in order are applied; after a gap the list is fetched again
	// (GET /user/devices), which drops what the gap hid. Updates about
	// users of other servers than the sender are ignored.
	sendEDU := func(txn string, content map[string]any) {
		t.Helper()
		body, _ := json.Marshal(map[string]any{"origin": b.ServerName, "origin_server_ts": 1, "pdus": []any{},
			"edus": []any{map[string]any{"edu_type": "m.device_list_update", "content": content}}})
		if _, err := b.HS.FedClient.SendTransaction(ctx, a.ServerName, txn, body); err != nil {
			t.Fatal(err)
		}
	}
	hasDevice := func(dev string) bool {
		devs, _, _, _, _ := a.HS.Store.RemoteDeviceList(ctx, bob.UserID)
		for _, d := range devs {
			if d.DeviceID == dev {
				return true
			}
		}
		return false
	}
	_, _, cur, _, _ := a.HS.Store.RemoteDeviceList(ctx, bob.UserID)
	sendEDU("d1", map[string]any{"user_id": bob.UserID, "device_id": "EXTRA", "stream_id": cur + 1, "prev_id": []int64{cur}})
	waitUntil(t, "the update in order applied", func() bool { return hasDevice("EXTRA") })
	sendEDU("d2", map[string]any{"user_id": bob.UserID, "device_id": "GAP", "stream_id": cur + 10, "prev_id": []int64{cur + 9}})
	waitUntil(t, "the list fetched again after a gap", func() bool { return !hasDevice("EXTRA") && cached() })
	if hasDevice("GAP") {
		t.Fatal("an update after a gap was applied")
	}
	sendEDU("d3", map[string]any{"user_id": alice.UserID, "device_id": "SPOOF", "stream_id": 1, "prev_id": []int64{}})
	if r := a.MustOK(t, "GET", "/_matrix/client/v3/devices", alice.Token, nil); contains(r.Body, "SPOOF") {
		t.Fatalf("a device list update from another server changed a local user: %s", r.Body)
	}
	if _, _, _, ok, _ := a.HS.Store.RemoteDeviceList(ctx, alice.UserID); ok {
		t.Fatal("a local user's list was cached from another server's update")
	}

	b.Stop()
	mustQueryKeys(t, a, alice, bob, ed)

	// Alice leaves: nobody here shares a room with bob, the cache goes.
	leave(t, a, alice, roomID)
	waitUntil(t, "bob's list dropped on a", func() bool { return !cached() })
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// toDevice syncs u until n messages of type typ arrived, and returns their contents.
func toDeviceMessages(t *testing.T, s *hstest.Server, u *hstest.User, typ string, n int) []map[string]any {
	t.Helper()
	var out []map[string]any
	since := ""
	deadline := time.Now().Add(15 * time.Second)
	for len(out) < n && time.Now().Before(deadline) {
		q := "/_matrix/client/v3/sync?timeout=1000"
		if since != "" {
			q += "&since=" + url.QueryEscape(since)
		}
		r := s.MustOK(t, "GET", q, u.Token, nil)
		since = r.Str("next_batch")
		var res struct {
			ToDevice struct {
				Events []struct {
					Type    string         `json:"type"`
					Sender  string         `json:"sender"`
					Content map[string]any `json:"content"`
				} `json:"events"`
			} `json:"to_device"`
		}
		json.Unmarshal(r.Body, &res)
		for _, e := range res.ToDevice.Events {
			if e.Type == typ {
				e.Content["sender"] = e.Sender
				out = append(out, e.Content)
			}
		}
	}
	// Anything more would be a duplicate.
	r := s.MustOK(t, "GET", "/_matrix/client/v3/sync?timeout=0&since="+url.QueryEscape(since), u.Token, nil)
	if contains(r.Body, typ) {
		t.Fatalf("more %s messages than expected: %s", typ, r.Body)
	}
	return out
}

// To-device messages cross servers as m.direct_to_device: to one device
// and to every device ("*"); a message ID seen before from the same sender
// is not delivered again; a sender not of the sending server is refused.
func TestToDeviceAcrossServers(t *testing.T) {
	hs := hstest.StartFederation(t, 2)
	a, b := hs[0], hs[1]
	alice, bob := a.Register(t, "alice"), b.Register(t, "bob")
	a.MustOK(t, "PUT", hstest.Path("/sendToDevice/%s/%s", "org.conclave.ping", "t1"), alice.Token,
		map[string]any{"messages": map[string]any{bob.UserID: map[string]any{bob.DeviceID: map[string]any{"n": 1}}}})
	a.MustOK(t, "PUT", hstest.Path("/sendToDevice/%s/%s", "org.conclave.ping", "t1"), alice.Token, // retried: not sent again
		map[string]any{"messages": map[string]any{bob.UserID: map[string]any{bob.DeviceID: map[string]any{"n": 1}}}})
	a.MustOK(t, "PUT", hstest.Path("/sendToDevice/%s/%s", "org.conclave.ping", "t2"), alice.Token,
		map[string]any{"messages": map[string]any{bob.UserID: map[string]any{"*": map[string]any{"n": 2}}}})
	got := toDeviceMessages(t, b, bob, "org.conclave.ping", 2)
	if len(got) != 2 || got[0]["n"] != 1.0 || got[1]["n"] != 2.0 || got[0]["sender"] != alice.UserID {
		t.Fatalf("bob got %v", got)
	}

	// B's server sends the same message ID in two transactions, and one in
	// the name of a user of A's server.
	send := func(txn, sender, msgID string, n int) {
		t.Helper()
		edu := map[string]any{"edu_type": "m.direct_to_device", "content": map[string]any{"sender": sender, "type": "org.conclave.pong", "message_id": msgID,
			"messages": map[string]any{alice.UserID: map[string]any{alice.DeviceID: map[string]any{"n": n}}}}}
		body, _ := json.Marshal(map[string]any{"origin": b.ServerName, "origin_server_ts": 1, "pdus": []any{}, "edus": []any{edu}})
		if _, err := b.HS.FedClient.SendTransaction(context.Background(), a.ServerName, txn, body); err != nil {
			t.Fatal(err)
		}
	}
	send("x1", bob.UserID, "m1", 1)
	send("x2", bob.UserID, "m1", 1)
	send("x3", "@mallory:"+a.ServerName, "m2", 9)
	send("x4", bob.UserID, "m3", 3)
	got = toDeviceMessages(t, a, alice, "org.conclave.pong", 2)
	if len(got) != 2 || got[0]["n"] != 1.0 || got[1]["n"] != 3.0 {
		t.Fatalf("alice got %v", got)
	}
}

// A device change committed without its announcement (what a crash between
// the two leaves) is announced when the server starts again.
func TestUnannouncedDeviceChangeSentAtStart(t *testing.T) {
	hs := hstest.StartFederation(t, 2)
	a, b := hs[0], hs[1]
	alice, bob := a.Register(t, "alice"), b.Register(t, "bob")
	ed := uploadNewKeys(t, a, alice)
	roomID := createPublicRoom(t, a, alice)
	joinVia(t, b, bob, roomID, a.ServerName)
	waitJoined(t, a, alice, roomID, bob.UserID)
	mustQueryKeys(t, b, bob, alice, ed)
	ctx := context.Background()
	nameOnB := func() string {
		devs, _, _, _, _ := b.HS.Store.RemoteDeviceList(ctx, alice.UserID)
		if len(devs) != 1 || devs[0].DisplayName == nil {
			return ""
		}
		return *devs[0].DisplayName
	}
	waitUntil(t, "alice's list cached on b", func() bool {
		_, _, _, ok, _ := b.HS.Store.RemoteDeviceList(ctx, alice.UserID)
		return ok
	})
	// Straight to the store: committed, never announced.
	if err := a.HS.Store.SetDeviceName(ctx, alice.UserID, alice.DeviceID, "Renamed"); err != nil {
		t.Fatal(err)
	}
	a = a.Restart(t)
	waitUntil(t, "the rename announced after the restart", func() bool { return nameOnB() == "Renamed" })
}
