package fedtest

import (
	"encoding/json"
	"net/url"
	"sync"
	"testing"
	"time"

	"conclave/internal/config"
	"conclave/internal/homeserver/hstest"
)

// Kicks and bans of another server's user are taken there too; a banned
// user cannot come back through their server.
func TestKickAndBanAcrossServers(t *testing.T) {
	hs := hstest.StartFederation(t, 2)
	a, b := hs[0], hs[1]
	alice := a.Register(t, "alice")
	bob := b.Register(t, "bob")
	roomID := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	join := func() *hstest.Response {
		return b.Do(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName), bob.Token, map[string]any{})
	}
	if r := join(); r.Status != 200 {
		t.Fatalf("join: %d %s", r.Status, r.Body)
	}
	bobSync := newSyncer(t, b, bob)
	a.MustOK(t, "POST", hstest.Path("/rooms/%s/kick", roomID), alice.Token, map[string]any{"user_id": bob.UserID, "reason": "out"})
	waitMembership(t, b, bob, roomID, bob.UserID, "leave")
	_ = bobSync
	if r := join(); r.Status != 200 {
		t.Fatalf("join after a kick: %d %s", r.Status, r.Body)
	}
	a.MustOK(t, "POST", hstest.Path("/rooms/%s/ban", roomID), alice.Token, map[string]any{"user_id": bob.UserID})
	waitMembership(t, b, bob, roomID, bob.UserID, "ban")
	if r := join(); r.Status != 403 {
		t.Fatalf("join after a ban: %d %s", r.Status, r.Body)
	}
	// Bob's server may no longer send into the room in his name.
	if r := b.Do(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/x", roomID), bob.Token, map[string]any{"body": "still here?"}); r.Status != 403 {
		t.Fatalf("banned user sends: %d %s", r.Status, r.Body)
	}
}

// waitMembership waits until u's server says who's membership in the room
// is want (as seen by u through the room's member list or their own sync).
func waitMembership(t *testing.T, s *hstest.Server, u *hstest.User, roomID, who, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	since := ""
	for time.Now().Before(deadline) {
		// include_leave: the event may have arrived before the first sync,
		// whose timeline must then show the room left.
		q := "/_matrix/client/v3/sync?timeout=1000&filter=" + url.QueryEscape(`{"room":{"include_leave":true}}`)
		if since != "" {
			q += "&since=" + url.QueryEscape(since)
		}
		r := s.MustOK(t, "GET", q, u.Token, nil)
		since = r.Str("next_batch")
		var res struct {
			Rooms map[string]map[string]struct {
				Timeline struct {
					Events []struct {
						Type     string `json:"type"`
						StateKey string `json:"state_key"`
						Content  struct {
							Membership string `json:"membership"`
						} `json:"content"`
					} `json:"events"`
				} `json:"timeline"`
			} `json:"rooms"`
		}
		json.Unmarshal(r.Body, &res)
		for _, section := range res.Rooms {
			for id, room := range section {
				if id != roomID {
					continue
				}
				for _, ev := range room.Timeline.Events {
					if ev.Type == "m.room.member" && ev.StateKey == who && ev.Content.Membership == want {
						return
					}
				}
			}
		}
	}
	t.Fatalf("%s's server never showed %s as %s", s.ServerName, who, want)
}

// A closed circle: a server outside federation_allow is refused when it
// asks, and never contacted.
func TestClosedCircle(t *testing.T) {
	hs := hstest.StartFederationEach(t, 3, func(i int, c *config.Config) {
		if i < 2 {
			c.FederationAllow = c.FederationAllow[:2] // the circle: servers 0 and 1
		}
	})
	a, outsider := hs[0], hs[2]
	alice := a.Register(t, "alice")
	eve := outsider.Register(t, "eve")
	roomID := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	r := outsider.Do(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName), eve.Token, map[string]any{})
	if r.Status != 403 {
		t.Fatalf("outsider's join: %d %s", r.Status, r.Body)
	}
	if r := a.Do(t, "POST", hstest.Path("/rooms/%s/invite", roomID), alice.Token, map[string]any{"user_id": eve.UserID}); r.Status == 200 {
		t.Fatalf("invite of an outsider: %d %s", r.Status, r.Body)
	}
	members := a.MustOK(t, "GET", hstest.Path("/rooms/%s/members", roomID), alice.Token, nil)
	if contains(members.Body, eve.UserID) {
		t.Fatalf("the outsider is a member: %s", members.Body)
	}
	es := outsider.MustOK(t, "GET", "/_matrix/client/v3/sync", eve.Token, nil)
	if contains(es.Body, roomID) {
		t.Fatalf("the outsider's server heard of the room: %s", es.Body)
	}
}

// Concurrent power level changes on two servers: each of three servers
// resolves the fork to the same state.
func TestConcurrentPowerLevelsConverge(t *testing.T) {
	hs := hstest.StartFederation(t, 3)
	a, b, c := hs[0], hs[1], hs[2]
	alice := a.Register(t, "alice")
	bob := b.Register(t, "bob")
	carol := c.Register(t, "carol")
	roomID := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	for _, p := range []struct {
		s *hstest.Server
		u *hstest.User
	}{{b, bob}, {c, carol}} {
		p.s.MustOK(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName), p.u.Token, map[string]any{})
	}
	pl := func(extra map[string]int) map[string]any {
		users := map[string]int{alice.UserID: 100, bob.UserID: 100}
		for k, v := range extra {
			users[k] = v
		}
		return map[string]any{"users": users, "state_default": 50, "events_default": 0, "ban": 50, "kick": 50, "redact": 50, "invite": 0}
	}
	a.MustOK(t, "PUT", hstest.Path("/rooms/%s/state/m.room.power_levels/", roomID), alice.Token, pl(nil))
	waitState(t, b, bob, roomID, "m.room.power_levels", func(c json.RawMessage) bool { return contains(c, bob.UserID) })

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		a.Do(t, "PUT", hstest.Path("/rooms/%s/state/m.room.power_levels/", roomID), alice.Token, pl(map[string]int{carol.UserID: 50}))
	}()
	go func() {
		defer wg.Done()
		b.Do(t, "PUT", hstest.Path("/rooms/%s/state/m.room.power_levels/", roomID), bob.Token, pl(map[string]int{carol.UserID: 75}))
	}()
	wg.Wait()
	// Whatever each saw first, the three end with the same power levels
	// (each server merges what it has: another message makes sure every
	// fork is cited).
	deadline := time.Now().Add(20 * time.Second)
	var ids []string
	for time.Now().Before(deadline) {
		ids = ids[:0]
		for _, p := range []struct {
			s *hstest.Server
			u *hstest.User
		}{{a, alice}, {b, bob}, {c, carol}} {
			r := p.s.MustOK(t, "GET", hstest.Path("/rooms/%s/state", roomID), p.u.Token, nil)
			var evs []struct {
				Type    string `json:"type"`
				EventID string `json:"event_id"`
			}
			json.Unmarshal(r.Body, &evs)
			for _, e := range evs {
				if e.Type == "m.room.power_levels" {
					ids = append(ids, e.EventID)
				}
			}
		}
		if len(ids) == 3 && ids[0] == ids[1] && ids[1] == ids[2] {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("power levels differ across servers: %v", ids)
}

// waitState waits until the state event of typ in the room, as u's server
// has it, satisfies ok.
func waitState(t *testing.T, s *hstest.Server, u *hstest.User, roomID, typ string, ok func(json.RawMessage) bool) {
	t.Helper()
	waitStateKey(t, s, u, roomID, typ, "", ok)
}

// waitStateKey is waitState for a state key.
func waitStateKey(t *testing.T, s *hstest.Server, u *hstest.User, roomID, typ, key string, ok func(json.RawMessage) bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		r := s.Do(t, "GET", hstest.Path("/rooms/%s/state/%s/%s", roomID, typ, key), u.Token, nil)
		if r.Status == 200 && ok(r.Body) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s's %s never matched", s.ServerName, typ)
}

// m.room.server_acl is enforced on what other servers send: once a room
// denies a server (here every server of the test, all named localhost), its
// events and EDUs for the room are refused, both ways.
func TestServerACLEnforced(t *testing.T) {
	hs := hstest.StartFederation(t, 2)
	a, b := hs[0], hs[1]
	alice := a.Register(t, "alice")
	bob := b.Register(t, "bob")
	roomID := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	b.MustOK(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName), bob.Token, map[string]any{})
	a.MustOK(t, "PUT", hstest.Path("/rooms/%s/state/m.room.server_acl/", roomID), alice.Token, map[string]any{"allow": []string{"*"}, "deny": []string{"localhost"}})
	// The ACL itself reaches bob's server (it was not in force yet there).
	waitState(t, b, bob, roomID, "m.room.server_acl", func(c json.RawMessage) bool { return contains(c, "localhost") })
	b.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/x", roomID), bob.Token, map[string]any{"msgtype": "m.text", "body": "from a denied server"})
	a.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/y", roomID), alice.Token, map[string]any{"msgtype": "m.text", "body": "to a denied server"})
	// Both transactions go at once (no back-off: each server just heard
	// from the other); two seconds is far more than their delivery takes
	// (milliseconds here), and without the ACL check both arrive in it.
	time.Sleep(2 * time.Second)
	if r := a.MustOK(t, "GET", hstest.Path("/rooms/%s/messages", roomID)+"?dir=b&limit=20", alice.Token, nil); contains(r.Body, "from a denied server") {
		t.Fatalf("alice's server took an event from a denied server: %s", r.Body)
	}
	if r := b.MustOK(t, "GET", hstest.Path("/rooms/%s/messages", roomID)+"?dir=b&limit=20", bob.Token, nil); contains(r.Body, "to a denied server") {
		t.Fatalf("bob's server took an event from a denied server: %s", r.Body)
	}
}

// A server joining through the resident server talks only to it: the other
// servers in the room hear of the join from the resident server.
func TestJoinForwardedToOtherServers(t *testing.T) {
	hs := hstest.StartFederation(t, 3)
	a, b, c := hs[0], hs[1], hs[2]
	alice := a.Register(t, "alice")
	bob := b.Register(t, "bob")
	carol := c.Register(t, "carol")
	roomID := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	b.MustOK(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName), bob.Token, map[string]any{})
	c.MustOK(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName), carol.Token, map[string]any{})
	// Bob's server learns of carol's join from alice's, with nobody
	// sending anything after it.
	waitStateKey(t, b, bob, roomID, "m.room.member", carol.UserID, func(c json.RawMessage) bool { return contains(c, `"join"`) })
}
