package fedtest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"conclave/internal/homeserver"
	"conclave/internal/homeserver/hstest"
	"conclave/internal/store"
)

// The flows of Complement's TestDeviceListUpdates (tests/csapi/
// device_lists_test.go): /sync's device_lists.changed/left and /keys/query
// after joins, leaves and rejoins, with Bob on Alice's server or another
// one. Bob's uploads carry new identity keys for the same device and no
// signatures, as Complement's do.

var dlSeq atomic.Int64

// uploadNewKeys uploads fresh, unsigned identity keys for u's device and
// returns the ed25519 key.
func uploadNewKeys(t *testing.T, s *hstest.Server, u *hstest.User) string {
	t.Helper()
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	curve := make([]byte, 32)
	rand.Read(curve)
	ed := base64.RawStdEncoding.EncodeToString(pub)
	s.MustOK(t, "POST", "/_matrix/client/v3/keys/upload", u.Token, map[string]any{"device_keys": map[string]any{
		"user_id": u.UserID, "device_id": u.DeviceID,
		"algorithms": []string{"m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"},
		"keys":       map[string]any{"ed25519:" + u.DeviceID: ed, "curve25519:" + u.DeviceID: base64.RawStdEncoding.EncodeToString(curve)},
	}})
	return ed
}

// mustQueryKeys checks that u's /keys/query shows who's device with ed.
func mustQueryKeys(t *testing.T, s *hstest.Server, u *hstest.User, who *hstest.User, ed string) {
	t.Helper()
	r := s.MustOK(t, "POST", "/_matrix/client/v3/keys/query", u.Token, map[string]any{"device_keys": map[string]any{who.UserID: []string{}}})
	var res struct {
		DeviceKeys map[string]map[string]struct {
			Keys map[string]string `json:"keys"`
		} `json:"device_keys"`
	}
	if err := json.Unmarshal(r.Body, &res); err != nil {
		t.Fatal(err)
	}
	if got := res.DeviceKeys[who.UserID][who.DeviceID].Keys["ed25519:"+who.DeviceID]; got != ed {
		t.Fatalf("%s's /keys/query shows %s's key %q, want %q: %s", u.UserID, who.UserID, got, ed, r.Body)
	}
}

// dlSync follows one user's /sync for device_lists.
type dlSync struct {
	s     *hstest.Server
	u     *hstest.User
	since string
}

type deviceLists struct {
	Changed []string `json:"changed"`
	Left    []string `json:"left"`
}

func (y *dlSync) once(t *testing.T, timeout time.Duration) (deviceLists, map[string]bool) {
	t.Helper()
	q := url.Values{"timeout": {fmt.Sprint(timeout.Milliseconds())}}
	if y.since != "" {
		q.Set("since", y.since)
	}
	r := y.s.MustOK(t, "GET", "/_matrix/client/v3/sync?"+q.Encode(), y.u.Token, nil)
	var out struct {
		NextBatch   string      `json:"next_batch"`
		DeviceLists deviceLists `json:"device_lists"`
		Rooms       struct {
			Join map[string]json.RawMessage `json:"join"`
		} `json:"rooms"`
	}
	if err := json.Unmarshal(r.Body, &out); err != nil {
		t.Fatal(err)
	}
	y.since = out.NextBatch
	joined := map[string]bool{}
	for id := range out.Rooms.Join {
		joined[id] = true
	}
	return out.DeviceLists, joined
}

// until syncs until device_lists.<section> holds userID.
func (y *dlSync) until(t *testing.T, section, userID string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		dl, _ := y.once(t, time.Second)
		list := dl.Changed
		if section == "left" {
			list = dl.Left
		}
		if slices.Contains(list, userID) {
			return
		}
	}
	t.Fatalf("%s never saw %s in device_lists.%s", y.u.UserID, userID, section)
}

func createPublicRoom(t *testing.T, s *hstest.Server, u *hstest.User) string {
	t.Helper()
	return s.MustOK(t, "POST", "/_matrix/client/v3/createRoom", u.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
}

func joinVia(t *testing.T, s *hstest.Server, u *hstest.User, roomID, via string) {
	t.Helper()
	s.MustOK(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(via), u.Token, map[string]any{})
}

func leave(t *testing.T, s *hstest.Server, u *hstest.User, roomID string) {
	t.Helper()
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/leave", roomID), u.Token, map[string]any{})
}

// waitJoined waits until u's server has who joined to roomID (as seen by u).
func waitJoined(t *testing.T, s *hstest.Server, u *hstest.User, roomID, who string) {
	t.Helper()
	waitMembership(t, s, u, roomID, who, "join")
}

type dlEnv struct {
	hsA, hsB *hstest.Server // Alice's server, Bob's server (maybe the same)
}

func (e dlEnv) users(t *testing.T) (alice, bob *hstest.User) {
	n := dlSeq.Add(1)
	return e.hsA.Register(t, fmt.Sprintf("alice%d", n)), e.hsB.Register(t, fmt.Sprintf("bob%d", n))
}

// barrier: a user on Bob's server, in a room with Alice, uploads keys; once
// Alice's sync shows it, earlier changes have been seen (Complement's
// makeBarrier).
func (e dlEnv) barrier(t *testing.T, alice *hstest.User) func(y *dlSync) {
	barry := e.hsB.Register(t, fmt.Sprintf("barry%d", dlSeq.Add(1)))
	roomID := createPublicRoom(t, e.hsB, barry)
	joinVia(t, e.hsA, alice, roomID, e.hsB.ServerName)
	return func(y *dlSync) {
		uploadNewKeys(t, e.hsB, barry)
		y.until(t, "changed", barry.UserID)
	}
}

// settled waits, when Bob is on another server, until Alice's server has
// cached his list (the first query starts that in the background; caching
// marks him changed, which must not be taken for a later change).
func (e dlEnv) settled(t *testing.T, alice, bob *hstest.User, ed string) {
	t.Helper()
	if e.hsA == e.hsB {
		return
	}
	waitUntil(t, "bob's list cached on alice's server", func() bool {
		_, _, _, ok, _ := e.hsA.HS.Store.RemoteDeviceList(context.Background(), bob.UserID)
		if !ok {
			mustQueryKeys(t, e.hsA, alice, bob, ed) // in case a resync gave up under load
		}
		return ok
	})
}

func testOtherUserJoin(t *testing.T, e dlEnv) {
	alice, bob := e.users(t)
	barrier := e.barrier(t, alice)
	ed := uploadNewKeys(t, e.hsB, bob)
	roomID := createPublicRoom(t, e.hsA, alice)
	y := &dlSync{s: e.hsA, u: alice}
	y.once(t, 0)
	joinVia(t, e.hsB, bob, roomID, e.hsA.ServerName)
	y.until(t, "changed", bob.UserID)
	mustQueryKeys(t, e.hsA, alice, bob, ed)
	e.settled(t, alice, bob, ed)
	barrier(y)
	ed = uploadNewKeys(t, e.hsB, bob)
	y.until(t, "changed", bob.UserID)
	mustQueryKeys(t, e.hsA, alice, bob, ed)
}

func testJoin(t *testing.T, e dlEnv) {
	alice, bob := e.users(t)
	barrier := e.barrier(t, alice)
	ed := uploadNewKeys(t, e.hsB, bob)
	roomID := createPublicRoom(t, e.hsB, bob)
	y := &dlSync{s: e.hsA, u: alice}
	y.once(t, 0)
	joinVia(t, e.hsA, alice, roomID, e.hsB.ServerName)
	y.until(t, "changed", bob.UserID)
	mustQueryKeys(t, e.hsA, alice, bob, ed)
	e.settled(t, alice, bob, ed)
	barrier(y)
	ed = uploadNewKeys(t, e.hsB, bob)
	y.until(t, "changed", bob.UserID)
	mustQueryKeys(t, e.hsA, alice, bob, ed)
}

func testOtherUserLeave(t *testing.T, e dlEnv) {
	alice, bob := e.users(t)
	barrier := e.barrier(t, alice)
	ed := uploadNewKeys(t, e.hsB, bob)
	roomID := createPublicRoom(t, e.hsA, alice)
	joinVia(t, e.hsB, bob, roomID, e.hsA.ServerName)
	waitJoined(t, e.hsA, alice, roomID, bob.UserID)
	y := &dlSync{s: e.hsA, u: alice}
	y.once(t, 0)
	mustQueryKeys(t, e.hsA, alice, bob, ed)
	barrier(y)
	leave(t, e.hsB, bob, roomID)
	y.until(t, "left", bob.UserID)
	// No cached list may answer for Bob any more.
	ed = uploadNewKeys(t, e.hsB, bob)
	mustQueryKeys(t, e.hsA, alice, bob, ed)
	if dl, _ := y.once(t, 0); slices.Contains(dl.Changed, bob.UserID) {
		t.Fatal("Alice was told about Bob's devices although they share no room")
	}
}

func testLeave(t *testing.T, e dlEnv) {
	alice, bob := e.users(t)
	barrier := e.barrier(t, alice)
	ed := uploadNewKeys(t, e.hsB, bob)
	roomID := createPublicRoom(t, e.hsB, bob)
	joinVia(t, e.hsA, alice, roomID, e.hsB.ServerName)
	waitJoined(t, e.hsB, bob, roomID, alice.UserID)
	y := &dlSync{s: e.hsA, u: alice}
	y.once(t, 0)
	mustQueryKeys(t, e.hsA, alice, bob, ed)
	barrier(y)
	leave(t, e.hsA, alice, roomID)
	waitMembership(t, e.hsB, bob, roomID, alice.UserID, "leave")
	y.until(t, "left", bob.UserID)
	ed = uploadNewKeys(t, e.hsB, bob)
	mustQueryKeys(t, e.hsA, alice, bob, ed)
	if dl, _ := y.once(t, 0); slices.Contains(dl.Changed, bob.UserID) {
		t.Fatal("Alice was told about Bob's devices although they share no room")
	}
}

func testOtherUserRejoin(t *testing.T, e dlEnv) {
	alice, bob := e.users(t)
	barrier := e.barrier(t, alice)
	ed := uploadNewKeys(t, e.hsB, bob)
	roomID := createPublicRoom(t, e.hsA, alice)
	joinVia(t, e.hsB, bob, roomID, e.hsA.ServerName)
	waitJoined(t, e.hsA, alice, roomID, bob.UserID)
	y := &dlSync{s: e.hsA, u: alice}
	y.once(t, 0)
	mustQueryKeys(t, e.hsA, alice, bob, ed)
	barrier(y)
	leave(t, e.hsB, bob, roomID)
	y.until(t, "left", bob.UserID)
	ed = uploadNewKeys(t, e.hsB, bob)
	joinVia(t, e.hsB, bob, roomID, e.hsA.ServerName)
	y.until(t, "changed", bob.UserID)
	mustQueryKeys(t, e.hsA, alice, bob, ed)
}

func TestDeviceListUpdates(t *testing.T) {
	hs := hstest.StartFederation(t, 2)
	local, remote := dlEnv{hs[0], hs[0]}, dlEnv{hs[0], hs[1]}
	for _, c := range []struct {
		name string
		run  func(*testing.T, dlEnv)
	}{
		{"user joins a room", testOtherUserJoin},
		{"joining a room with a user", testJoin},
		{"user leaves a room", testOtherUserLeave},
		{"leaving a room with a user", testLeave},
		{"user rejoins a room", testOtherUserRejoin},
	} {
		t.Run("local/"+c.name, func(t *testing.T) { c.run(t, local) })
		t.Run("remote/"+c.name, func(t *testing.T) { c.run(t, remote) })
	}
}

// untilExactly syncs until device_lists is exactly changed/left (sorted).
func (y *dlSync) untilExactly(t *testing.T, changed, left []string) {
	t.Helper()
	slices.Sort(changed)
	slices.Sort(left)
	deadline := time.Now().Add(20 * time.Second)
	var seen []deviceLists // every non-empty answer, for the failure message
	for time.Now().Before(deadline) {
		dl, _ := y.once(t, time.Second)
		slices.Sort(dl.Changed)
		slices.Sort(dl.Left)
		if slices.Equal(dl.Changed, changed) && slices.Equal(dl.Left, left) {
			return
		}
		if len(dl.Changed)+len(dl.Left) > 0 {
			seen = append(seen, dl)
		}
	}
	t.Fatalf("%s: device_lists never %v/%v (answers seen: %+v)", y.u.UserID, changed, left, seen)
}

// The flows of Complement's TestDeviceListsUpdateOverFederation: after Bob
// joins Alice's encrypted room from another server, each sees exactly the
// other (and Bob himself, whose devices went to a new server) in
// device_lists.changed; Alice's new device, added while Bob's server is
// down, reaches Bob once it is back — also when Alice's server restarted
// meanwhile.
func TestDeviceListsUpdateOverFederation(t *testing.T) {
	for _, tc := range []struct {
		name          string
		restartSender bool
	}{{"server down", false}, {"server down and sender restarted", true}} {
		t.Run(tc.name, func(t *testing.T) {
			hs := hstest.StartFederation(t, 2)
			a, b := hs[0], hs[1]
			alice, bob := a.Register(t, "alice"), b.Register(t, "bob")
			roomID := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "private_chat", "invite": []string{bob.UserID},
				"initial_state": []map[string]any{{"type": "m.room.encryption", "state_key": "", "content": map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}}}}).Str("room_id")
			ya, yb := &dlSync{s: a, u: alice}, &dlSync{s: b, u: bob}
			ya.once(t, 0)
			waitUntil(t, "bob's invite", func() bool {
				r := b.MustOK(t, "GET", "/_matrix/client/v3/sync?timeout=0", bob.Token, nil)
				return contains(r.Body, roomID)
			})
			yb.once(t, 0)
			joinVia(t, b, bob, roomID, a.ServerName)
			ya.untilExactly(t, []string{bob.UserID}, []string{})
			yb.untilExactly(t, []string{alice.UserID, bob.UserID}, []string{})

			b.Stop()
			login := a.MustOK(t, "POST", "/_matrix/client/v3/login", "", map[string]any{"type": "m.login.password", "device_id": "NEW_DEVICE",
				"identifier": map[string]any{"type": "m.id.user", "user": "alice"}, "password": "correct horse battery alice"})
			alice2 := &hstest.User{UserID: alice.UserID, DeviceID: login.Str("device_id"), Token: login.Str("access_token")}
			ed := uploadNewKeys(t, a, alice2)
			if tc.restartSender {
				a = a.Restart(t)
				ya.s = a
			}
			b = b.Restart(t)
			yb.s = b
			ya.untilExactly(t, []string{alice.UserID}, []string{})
			yb.untilExactly(t, []string{alice.UserID}, []string{})
			mustQueryKeys(t, b, bob, alice2, ed)
		})
	}
}

// A local user who joins a room with servers not yet receiving their device
// list updates sends those servers their devices (Server-Server API,
// "Device Management": "must be sent ... when that user joins a room which
// contains servers which are not already receiving updates"; Complement's
// TestDeviceListsUpdateOverFederationOnRoomJoin). A join that brings no new
// server sends nothing. What Alice's server queues is watched in its store.
func TestDeviceListsSentToServersOnRoomJoin(t *testing.T) {
	spy := &enqueueSpy{}
	hs := hstest.StartFederationWith(t, 4, nil, func(i int) homeserver.Options {
		if i != 0 {
			return homeserver.Options{}
		}
		return homeserver.Options{WrapStore: func(st homeserver.Store) homeserver.Store { spy.Store = st; return spy }}
	})
	a, b, c, d := hs[0], hs[1], hs[2], hs[3]
	alice, bob, carol, dave := a.Register(t, "alice"), b.Register(t, "bob"), c.Register(t, "carol"), d.Register(t, "dave")
	uploadNewKeys(t, a, alice)
	r1 := createPublicRoom(t, b, bob)
	r2 := createPublicRoom(t, b, bob)
	r3 := createPublicRoom(t, d, dave)
	for _, r := range []string{r1, r2} {
		joinVia(t, c, carol, r, b.ServerName)
		waitJoined(t, b, bob, r, carol.UserID)
	}
	announced := func(dest string) int { return len(spy.deviceUpdates(t, dest, alice.UserID)) }
	joinVia(t, a, alice, r1, b.ServerName)
	waitUntil(t, "alice's device queued for bob's and carol's servers", func() bool {
		return announced(b.ServerName) == 1 && announced(c.ServerName) == 1
	})
	u := spy.deviceUpdates(t, c.ServerName, alice.UserID)[0]
	if u["device_id"] != alice.DeviceID || u["keys"] == nil || fmt.Sprint(u["prev_id"]) != "[]" {
		t.Fatalf("announcement: %v", u)
	}
	// Both of r2's servers receive Alice's updates already (r1): nothing.
	// r3's server is new. The join hooks run one after the other, so once
	// r3's announcement is seen, r2's join has been judged (while Alice
	// was still in r1).
	joinVia(t, a, alice, r2, b.ServerName)
	joinVia(t, a, alice, r3, d.ServerName)
	waitUntil(t, "alice's device queued for dave's server", func() bool { return announced(d.ServerName) == 1 })
	if nb, nc := announced(b.ServerName), announced(c.ServerName); nb != 1 || nc != 1 {
		t.Fatalf("after a join that brought no new server: %d announcements for bob's server, %d for carol's, want 1 each", nb, nc)
	}
	// Sharing no room any more, they are new again, also when Alice's
	// server rejoins a room it knew (send_join again).
	for _, r := range []string{r1, r2, r3} {
		leave(t, a, alice, r)
	}
	joinVia(t, a, alice, r1, b.ServerName)
	waitUntil(t, "alice's device queued again", func() bool {
		return announced(b.ServerName) == 2 && announced(c.ServerName) == 2
	})
}

// enqueueSpy records what a server queues for other servers.
type enqueueSpy struct {
	homeserver.Store
	mu    sync.Mutex
	items []store.FedEnqueue
}

func (s *enqueueSpy) FedEnqueue(ctx context.Context, items []store.FedEnqueue) error {
	s.mu.Lock()
	s.items = append(s.items, items...)
	s.mu.Unlock()
	return s.Store.FedEnqueue(ctx, items)
}

// deviceUpdates are the m.device_list_update contents about userID queued
// for dest.
func (s *enqueueSpy) deviceUpdates(t *testing.T, dest, userID string) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, it := range s.items {
		if it.Item.EDUType != "m.device_list_update" || !slices.Contains(it.Destinations, dest) {
			continue
		}
		var c map[string]any
		if err := json.Unmarshal(it.Item.JSON, &c); err != nil {
			t.Fatal(err)
		}
		if c["user_id"] == userID {
			out = append(out, c)
		}
	}
	return out
}
