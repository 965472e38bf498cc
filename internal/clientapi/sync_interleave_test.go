package clientapi_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"conclave/internal/homeserver"
	"conclave/internal/homeserver/hstest"
)

// These tests hold a write at the moment it is committed in the store but
// not yet returned to its service (hstest.Gates), run a /sync in that
// moment, then let the write finish and sync on: whatever the write
// changed must reach the client in one of the syncs. The counters the
// /sync fast paths used before the change tracker were bumped after the
// commit, and each of these interleavings lost the change for good.

// syncer is one device's incremental syncs.
type syncClient struct {
	t     *testing.T
	s     *hstest.Server
	token string
	since string
}

func newSyncClient(t *testing.T, s *hstest.Server, token string) *syncClient {
	c := &syncClient{t: t, s: s, token: token}
	c.sync("")
	c.sync("") // a second incremental sync: the fast paths are warm
	return c
}

func (c *syncClient) sync(filter string) map[string]any {
	c.t.Helper()
	p := "/_matrix/client/v3/sync?timeout=0"
	if c.since != "" {
		p += "&since=" + url.QueryEscape(c.since)
	}
	if filter != "" {
		p += "&filter=" + url.QueryEscape(filter)
	}
	r := c.s.MustOK(c.t, "GET", p, c.token, nil)
	c.since = r.Str("next_batch")
	return r.JSON
}

func dig2(v any, path ...string) any {
	for _, p := range path {
		m, _ := v.(map[string]any)
		v = m[p]
	}
	return v
}

// startGated starts a server whose store writes can be held.
func startGated(t *testing.T) (*hstest.Server, *hstest.Gates) {
	g := hstest.NewGates()
	return hstest.StartWith(t, homeserver.Options{WrapStore: g.Wrap}), g
}

// inWindow runs write (an HTTP request) with op held after its commit, runs
// during the hold a sync of c, releases, and returns the window sync and
// two syncs after it. The write is released when the window sync returns,
// or when it reads the user's memberships (it may then wait for the room
// lock the held write keeps).
func inWindow(t *testing.T, g *hstest.Gates, op hstest.Op, c *syncClient, write func() int) []map[string]any {
	t.Helper()
	gate := g.Arm(t, op)
	done := make(chan int, 1)
	go func() {
		st := http.StatusOK
		defer func() { done <- st }()
		st = write()
	}()
	gate.WaitCommitted(t)
	reading := g.Reading(hstest.OpUserMemberships)
	synced := make(chan *hstest.Response, 1)
	go func() {
		synced <- c.s.Do(t, "GET", "/_matrix/client/v3/sync?timeout=0&since="+url.QueryEscape(c.since), c.token, nil)
	}()
	var r *hstest.Response
	select {
	case r = <-synced:
		gate.Release()
	case <-reading:
		gate.Release()
		r = <-synced
	}
	if r.Status != http.StatusOK {
		t.Fatalf("window sync: %d %s", r.Status, r.Body)
	}
	if st := <-done; st != http.StatusOK {
		t.Fatalf("held write answered %d", st)
	}
	c.since = r.Str("next_batch")
	return []map[string]any{r.JSON, c.sync(""), c.sync("")}
}

func TestToDeviceCommittedDuringSyncArrives(t *testing.T) {
	s, g := startGated(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	roomID := s.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	s.MustOK(t, "POST", hstest.Path("/join/%s", roomID), bob.Token, map[string]any{})
	c := newSyncClient(t, s, bob.Token)
	syncs := inWindow(t, g, hstest.OpSendToDevice, c, func() int {
		return s.Do(t, "PUT", hstest.Path("/sendToDevice/%s/%s", "m.room_key", "k1"), alice.Token,
			map[string]any{"messages": map[string]any{bob.UserID: map[string]any{bob.DeviceID: map[string]any{"session_id": "s1"}}}}).Status
	})
	n := 0
	for _, js := range syncs {
		evs, _ := dig2(js, "to_device", "events").([]any)
		n += len(evs)
	}
	if n != 1 {
		t.Fatalf("the to-device message arrived %d times, want once", n)
	}
}

func TestAccountDataCommittedDuringSyncArrives(t *testing.T) {
	s, g := startGated(t)
	bob := s.CreateUser(t, "bob")
	c := newSyncClient(t, s, bob.Token)
	syncs := inWindow(t, g, hstest.OpPutAccountData, c, func() int {
		return s.Do(t, "PUT", hstest.Path("/user/%s/account_data/%s", bob.UserID, "org.example.x"), bob.Token, map[string]any{"v": 1}).Status
	})
	found := false
	for _, js := range syncs {
		evs, _ := dig2(js, "account_data", "events").([]any)
		for _, e := range evs {
			found = found || dig2(e, "type") == "org.example.x"
		}
	}
	if !found {
		t.Fatal("account data never arrived")
	}
}

func TestReceiptCommittedDuringSyncArrives(t *testing.T) {
	s, g := startGated(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	roomID := s.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	s.MustOK(t, "POST", hstest.Path("/join/%s", roomID), bob.Token, map[string]any{})
	ev := s.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/%s", roomID, "m1"), bob.Token, map[string]any{"msgtype": "m.text", "body": "hi"}).Str("event_id")
	c := newSyncClient(t, s, bob.Token)
	syncs := inWindow(t, g, hstest.OpPutReceipt, c, func() int {
		return s.Do(t, "POST", hstest.Path("/rooms/%s/receipt/m.read/%s", roomID, ev), alice.Token, map[string]any{}).Status
	})
	found := false
	for _, js := range syncs {
		evs, _ := dig2(js, "rooms", "join", roomID, "ephemeral", "events").([]any)
		for _, e := range evs {
			if dig2(e, "type") == "m.receipt" && dig2(e, "content", ev, "m.read", alice.UserID) != nil {
				found = true
			}
		}
	}
	if !found {
		t.Fatal("alice's receipt never reached bob")
	}
}

func TestInviteCommittedDuringSyncArrives(t *testing.T) {
	s, g := startGated(t)
	carol := s.CreateUser(t, "carol")
	bob := s.CreateUser(t, "bob")
	roomID := s.MustOK(t, "POST", "/_matrix/client/v3/createRoom", carol.Token, map[string]any{"preset": "private_chat"}).Str("room_id")
	c := newSyncClient(t, s, bob.Token)
	syncs := inWindow(t, g, hstest.OpPersistEvents, c, func() int {
		return s.Do(t, "POST", hstest.Path("/rooms/%s/invite", roomID), carol.Token, map[string]any{"user_id": bob.UserID}).Status
	})
	found := false
	for _, js := range syncs {
		found = found || dig2(js, "rooms", "invite", roomID) != nil
	}
	if !found {
		t.Fatal("the invite never reached bob")
	}
}

func TestNewDeviceCommittedDuringSyncArrives(t *testing.T) {
	s, g := startGated(t)
	carol := s.Register(t, "carol")
	bob := s.CreateUser(t, "bob")
	roomID := s.MustOK(t, "POST", "/_matrix/client/v3/createRoom", carol.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	s.MustOK(t, "POST", hstest.Path("/join/%s", roomID), bob.Token, map[string]any{})
	c := newSyncClient(t, s, bob.Token)
	syncs := inWindow(t, g, hstest.OpCreateDevice, c, func() int {
		return s.Do(t, "POST", "/_matrix/client/v3/login", "", map[string]any{"type": "m.login.password",
			"identifier": map[string]any{"type": "m.id.user", "user": "carol"}, "password": "correct horse battery carol"}).Status
	})
	if !changedIn(syncs, carol.UserID) {
		t.Fatal("carol's new device never showed in bob's device_lists.changed")
	}
}

func changedIn(syncs []map[string]any, userID string) bool {
	for _, js := range syncs {
		l, _ := dig2(js, "device_lists", "changed").([]any)
		if slices.Contains(l, any(userID)) {
			return true
		}
	}
	return false
}

// A sync whose filter leaves a room out must still report device-list
// changes caused there: a user who joined a room the syncing user is in.
func TestDeviceListsAfterFilteredSync(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	dave := s.CreateUser(t, "dave")
	shared := s.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	other := s.MustOK(t, "POST", "/_matrix/client/v3/createRoom", bob.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	s.MustOK(t, "POST", hstest.Path("/join/%s", shared), bob.Token, map[string]any{})
	c := newSyncClient(t, s, bob.Token)
	s.MustOK(t, "POST", hstest.Path("/join/%s", shared), dave.Token, map[string]any{})
	filter, _ := json.Marshal(map[string]any{"room": map[string]any{"rooms": []string{other}}})
	syncs := []map[string]any{c.sync(string(filter)), c.sync(""), c.sync("")}
	if !changedIn(syncs, dave.UserID) {
		t.Fatal("dave joined a room bob is in, and never showed in bob's device_lists.changed")
	}
}
