package fedtest

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"conclave/internal/homeserver/hstest"
)

// Presence crosses servers both ways for users sharing a room; an m.presence
// EDU about another server's user, or about a user sharing no room with a
// user of the receiving server, is dropped.
func TestPresenceAcrossServers(t *testing.T) {
	hs := hstest.StartFederation(t, 2)
	a, b := hs[0], hs[1]
	alice := a.Register(t, "alice")
	bob := b.Register(t, "bob")
	roomID := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	b.MustOK(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName), bob.Token, map[string]any{})

	a.MustOK(t, "PUT", "/_matrix/client/v3/presence/"+url.PathEscape(alice.UserID)+"/status", alice.Token, map[string]any{"presence": "unavailable", "status_msg": "in a meeting"})
	waitPresence(t, b, bob, alice.UserID, "unavailable", "in a meeting")
	b.MustOK(t, "PUT", "/_matrix/client/v3/presence/"+url.PathEscape(bob.UserID)+"/status", bob.Token, map[string]any{"presence": "online", "status_msg": "back"})
	waitPresence(t, a, alice, bob.UserID, "online", "back")

	// Bob's server speaks for alice, and for a user of its own alone in no
	// room: neither is taken.
	edu := func(userID, msg string) map[string]any {
		return map[string]any{"edu_type": "m.presence", "content": map[string]any{"push": []map[string]any{
			{"user_id": userID, "presence": "online", "status_msg": msg, "last_active_ago": 10, "currently_active": true}}}}
	}
	stranger := "@stranger:" + b.ServerName
	body, _ := json.Marshal(map[string]any{"origin": b.ServerName, "origin_server_ts": 1, "pdus": []any{},
		"edus": []any{edu(alice.UserID, "forged"), edu(stranger, "hello"), edu(bob.UserID, "through the API")}})
	if _, err := b.HS.FedClient.SendTransaction(context.Background(), a.ServerName, "presence", body); err != nil {
		t.Fatal(err)
	}
	// The last of the three, which is taken, says the EDUs were processed.
	waitPresence(t, a, alice, bob.UserID, "online", "through the API")
	r := a.MustOK(t, "GET", "/_matrix/client/v3/presence/"+url.PathEscape(alice.UserID)+"/status", alice.Token, nil)
	if strings.Contains(string(r.Body), "forged") {
		t.Fatalf("alice's presence on her own server: %s", r.Body)
	}
	if got := a.HS.Presence.Get(stranger); got.StatusMsg != "" || got.Presence != "offline" {
		t.Fatalf("a user sharing no room: %+v", got)
	}
}

func waitPresence(t *testing.T, s *hstest.Server, observer *hstest.User, userID, presence, msg string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := s.Do(t, "GET", "/_matrix/client/v3/presence/"+url.PathEscape(userID)+"/status", observer.Token, nil)
		var st struct {
			Presence  string `json:"presence"`
			StatusMsg string `json:"status_msg"`
		}
		json.Unmarshal(r.Body, &st)
		if r.Status == 200 && st.Presence == presence && st.StatusMsg == msg {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's presence on %s: %d %s", userID, s.ServerName, r.Status, r.Body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
