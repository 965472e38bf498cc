package fedtest

import (
	"net/url"
	"testing"

	"conclave/internal/homeserver/hstest"
)

// A user joining, through another server, the room that replaced one they
// were in keeps their push rules for it (Client-Server API, "Room
// upgrades": the server should transfer notification settings; Complement
// TestPushRuleRoomUpgrade, "joining a remote upgraded room").
func TestRemoteUpgradedRoomJoinCarriesPushRules(t *testing.T) {
	servers := hstest.StartFederation(t, 2)
	a, b := servers[0], servers[1]
	alice := a.CreateUser(t, "alice")
	bob := b.CreateUser(t, "bob")
	old := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat", "room_version": "10"}).Str("room_id")
	join := func(roomID string) {
		b.MustOK(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName), bob.Token, map[string]any{})
	}
	join(old)
	b.MustOK(t, "PUT", "/_matrix/client/v3/pushrules/global/room/"+url.PathEscape(old), bob.Token, map[string]any{"actions": []string{"dont_notify"}})
	newRoom := a.MustOK(t, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(old)+"/upgrade", alice.Token, map[string]string{"new_version": "11"}).Str("replacement_room")
	join(newRoom)
	r := b.Do(t, "GET", "/_matrix/client/v3/pushrules/global/room/"+url.PathEscape(newRoom), bob.Token, nil)
	if actions, _ := r.JSON["actions"].([]any); r.Status != 200 || len(actions) != 1 || actions[0] != "dont_notify" {
		t.Fatalf("bob's rule for the new room: %d %s", r.Status, r.Body)
	}
}
