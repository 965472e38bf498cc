package fedtest

import (
	"encoding/json"
	"net/url"
	"testing"

	"conclave/internal/homeserver/hstest"
)

// TestPushRulesOnReceivedEvents: events that arrive over federation are
// evaluated against the local recipients' push rules like local ones: they
// count in /sync's unread counts and GET /notifications.
func TestPushRulesOnReceivedEvents(t *testing.T) {
	hs := hstest.StartFederation(t, 2)
	a, b := hs[0], hs[1]
	alice := a.Register(t, "alice")
	bob := b.Register(t, "bob")
	roomID := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	b.MustOK(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName), bob.Token, map[string]any{})
	bobSync := newSyncer(t, b, bob)
	a.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/m1", roomID), alice.Token, map[string]any{"msgtype": "m.text", "body": "hello"})
	a.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/m2", roomID), alice.Token,
		map[string]any{"msgtype": "m.text", "body": "hey you", "m.mentions": map[string]any{"user_ids": []string{bob.UserID}}})
	a.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/m3", roomID), alice.Token, map[string]any{"msgtype": "m.notice", "body": "bot"})
	bobSync.waitFor(t, roomID, body("bot"))

	r := b.MustOK(t, "GET", "/_matrix/client/v3/sync", bob.Token, nil)
	var s struct {
		Rooms struct {
			Join map[string]struct {
				Unread struct {
					N int `json:"notification_count"`
					H int `json:"highlight_count"`
				} `json:"unread_notifications"`
			} `json:"join"`
		} `json:"rooms"`
	}
	json.Unmarshal(r.Body, &s)
	if u := s.Rooms.Join[roomID].Unread; u.N != 2 || u.H != 1 {
		t.Fatalf("bob's counts on his server: %+v, want 2/1", u)
	}
	n := b.MustOK(t, "GET", "/_matrix/client/v3/notifications?only=highlight", bob.Token, nil)
	var page struct {
		N []struct {
			Event struct {
				Sender string `json:"sender"`
			} `json:"event"`
		} `json:"notifications"`
	}
	json.Unmarshal(n.Body, &page)
	if len(page.N) != 1 || page.N[0].Event.Sender != alice.UserID {
		t.Fatalf("bob's highlights: %s", n.Body)
	}
}
