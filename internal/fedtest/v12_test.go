package fedtest

import (
	"net/url"
	"testing"

	"conclave/internal/homeserver/hstest"
)

// Room version 12 across servers: the room ID is the create event's hash
// (MSC4291), the create event is cited by no auth_events and has no
// room_id, yet a join through the resident server must import it.
func TestRoomVersion12JoinAcrossServers(t *testing.T) {
	hs := hstest.StartFederation(t, 2)
	a, b := hs[0], hs[1]
	alice := a.Register(t, "alice")
	bob := b.Register(t, "bob")
	room := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat", "room_version": "12"}).Str("room_id")
	r := b.Do(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(room)+"?server_name="+url.QueryEscape(a.ServerName), bob.Token, map[string]any{})
	if r.Status != 200 {
		t.Fatalf("join of a v12 room: %d %s", r.Status, r.Body)
	}
	ys := newSyncer(t, a, alice)
	b.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/v12", room), bob.Token, map[string]any{"msgtype": "m.text", "body": "v12 hello"})
	ys.waitFor(t, room, body("v12 hello"))
	b.MustOK(t, "GET", hstest.Path("/rooms/%s/state/m.room.create/", room), bob.Token, nil)
	yb := newSyncer(t, b, bob)
	a.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/v12", room), alice.Token, map[string]any{"msgtype": "m.text", "body": "v12 back"})
	yb.waitFor(t, room, body("v12 back"))
}
