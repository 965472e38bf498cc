package fedtest

import (
	"encoding/json"
	"fmt"
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

// A restricted room this server is in, but whose rule no user here can
// authorise (none may invite): the join goes through a server whose users
// can (Complement's TestRestrictedRoomsRemoteJoinLocalUser).
func TestRestrictedJoinAuthorisedByAnotherResidentServer(t *testing.T) {
	hs := hstest.StartFederation(t, 2)
	a, b := hs[0], hs[1]
	charlie := b.Register(t, "charlie")
	allowed := b.MustOK(t, "POST", "/_matrix/client/v3/createRoom", charlie.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	restricted := b.MustOK(t, "POST", "/_matrix/client/v3/createRoom", charlie.Token, map[string]any{"preset": "public_chat", "room_version": "10",
		"initial_state": []any{map[string]any{"type": "m.room.join_rules", "state_key": "", "content": map[string]any{"join_rule": "restricted",
			"allow": []any{map[string]any{"type": "m.room_membership", "room_id": allowed, "via": []string{b.ServerName}}}}}}}).Str("room_id")
	alice := a.Register(t, "alice")
	bob := a.Register(t, "bob")
	b.MustOK(t, "POST", hstest.Path("/rooms/%s/invite", restricted), charlie.Token, map[string]any{"user_id": alice.UserID})
	join := func(u *hstest.User, room, via string) *hstest.Response {
		return a.Do(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(room)+"?server_name="+url.QueryEscape(via), u.Token, map[string]any{})
	}
	if r := join(alice, restricted, b.ServerName); r.Status != 200 {
		t.Fatalf("alice's invited join: %d %s", r.Status, r.Body)
	}
	if r := join(bob, restricted, a.ServerName); r.Status == 200 {
		t.Fatalf("bob joined before joining the allowed room")
	}
	if r := join(bob, allowed, b.ServerName); r.Status != 200 {
		t.Fatalf("bob joining the allowed room: %d %s", r.Status, r.Body)
	}
	if r := join(bob, restricted, a.ServerName); r.Status != 200 {
		t.Fatalf("bob's restricted join through the other resident server: %d %s", r.Status, r.Body)
	}
	waitMembership(t, b, charlie, restricted, bob.UserID, "join")
	a.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/in", restricted), bob.Token, map[string]any{"msgtype": "m.text", "body": "bob is in"})
	newSyncer(t, b, charlie).waitFor(t, restricted, body("bob is in"))
}

// Only the inviter rescinds an invite across servers: a kick of a remote
// invitee by another member is not sent to the invitee's server (Synapse;
// Complement's "Non-invitee user cannot rescind invite over federation"),
// the inviter's is.
func TestOnlyTheInviterRescindsAcrossServers(t *testing.T) {
	hs := hstest.StartFederation(t, 2)
	a, b := hs[0], hs[1]
	alice := a.Register(t, "alice")
	alice2 := a.Register(t, "alice2")
	bob := b.Register(t, "bob")
	shared := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	b.MustOK(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(shared), bob.Token, map[string]any{})
	invited := func(room string) bool {
		r := b.MustOK(t, "GET", "/_matrix/client/v3/sync", bob.Token, nil)
		var s inviteSync
		json.Unmarshal(r.Body, &s)
		_, ok := s.Rooms.Invite[room]
		return ok
	}
	yb := newSyncer(t, b, bob)
	for i, inviter := range []*hstest.User{alice2, alice} {
		room := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "private_chat", "invite": []string{alice2.UserID}}).Str("room_id")
		a.MustOK(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(room), alice2.Token, map[string]any{})
		a.MustOK(t, "POST", hstest.Path("/rooms/%s/invite", room), inviter.Token, map[string]any{"user_id": bob.UserID})
		if !invited(room) {
			t.Fatalf("bob not invited")
		}
		a.MustOK(t, "POST", hstest.Path("/rooms/%s/kick", room), alice.Token, map[string]any{"user_id": bob.UserID})
		// A message in the shared room after the kick: once bob has it,
		// a rescission sent before it has arrived too.
		marker := fmt.Sprintf("after kick %d", i)
		a.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/%s", shared, fmt.Sprint("k", i)), alice.Token, map[string]any{"msgtype": "m.text", "body": marker})
		yb.waitFor(t, shared, body(marker))
		if inviter == alice2 && !invited(room) {
			t.Fatalf("a kick by someone other than the inviter rescinded bob's invite on his server")
		}
		if inviter == alice && invited(room) {
			t.Fatalf("the inviter's kick did not rescind bob's invite on his server")
		}
	}
}

// An invite to a room no server is in any more is still rejected: the
// leave is made locally (Synapse's out-of-band leave).
func TestRejectInviteToEmptyRoom(t *testing.T) {
	hs := hstest.StartFederation(t, 2)
	a, b := hs[0], hs[1]
	alice := a.Register(t, "alice")
	bob := b.Register(t, "bob")
	room := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "private_chat", "invite": []string{bob.UserID}}).Str("room_id")
	a.MustOK(t, "POST", hstest.Path("/rooms/%s/leave", room), alice.Token, map[string]any{})
	if r := b.Do(t, "POST", hstest.Path("/rooms/%s/leave", room), bob.Token, map[string]any{}); r.Status != 200 {
		t.Fatalf("rejecting the invite to an empty room: %d %s", r.Status, r.Body)
	}
	r := b.MustOK(t, "GET", "/_matrix/client/v3/sync", bob.Token, nil)
	var s inviteSync
	json.Unmarshal(r.Body, &s)
	if _, ok := s.Rooms.Invite[room]; ok {
		t.Fatalf("the invite is still there: %s", r.Body)
	}
	r = b.MustOK(t, "GET", "/_matrix/client/v3/sync?filter="+url.QueryEscape(`{"room":{"include_leave":true}}`), bob.Token, nil)
	json.Unmarshal(r.Body, &s)
	if _, ok := s.Rooms.Leave[room]; !ok {
		t.Fatalf("no leave in bob's sync: %s", r.Body)
	}
}

// Stripped state (MSC4311, Matrix 1.16): servers send each other full
// PDUs; clients get {type, state_key, content, sender}, and for the create
// event its origin_server_ts too — for a local invite and a remote one.
func TestInviteStrippedStateCreateEvent(t *testing.T) {
	hs := hstest.StartFederation(t, 2)
	a, b := hs[0], hs[1]
	alice := a.Register(t, "alice")
	local := a.Register(t, "local")
	remote := b.Register(t, "remote")
	room := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat", "room_version": "12", "name": "Stripped"}).Str("room_id")
	for _, c := range []struct {
		s *hstest.Server
		u *hstest.User
	}{{a, local}, {b, remote}} {
		a.MustOK(t, "POST", hstest.Path("/rooms/%s/invite", room), alice.Token, map[string]any{"user_id": c.u.UserID})
		r := c.s.MustOK(t, "GET", "/_matrix/client/v3/sync", c.u.Token, nil)
		var s struct {
			Rooms struct {
				Invite map[string]struct {
					InviteState struct {
						Events []map[string]json.RawMessage `json:"events"`
					} `json:"invite_state"`
				} `json:"invite"`
			} `json:"rooms"`
		}
		json.Unmarshal(r.Body, &s)
		var create, name map[string]json.RawMessage
		for _, ev := range s.Rooms.Invite[room].InviteState.Events {
			switch string(ev["type"]) {
			case `"m.room.create"`:
				create = ev
			case `"m.room.name"`:
				name = ev
			}
		}
		if create == nil || create["origin_server_ts"] == nil || create["sender"] == nil {
			t.Fatalf("%s: no full create event in invite_state: %s", c.u.UserID, r.Body)
		}
		if name == nil || name["hashes"] != nil || name["signatures"] != nil || name["auth_events"] != nil {
			t.Fatalf("%s: the name event is not stripped for the client: %s", c.u.UserID, r.Body)
		}
	}
}

// A resident server that left the allowed room cannot vouch for a
// restricted join (its view of that room's members is stale): it answers
// 400 M_UNABLE_TO_GRANT_JOIN and the joining server must ask another
// (Complement's TestRestrictedRoomsRemoteJoinFailOver).
func TestRestrictedJoinNotVouchedByServerOutOfAllowedRoom(t *testing.T) {
	hs := hstest.StartFederation(t, 3)
	a, b, c := hs[0], hs[1], hs[2]
	alice, bob, charlie := a.Register(t, "alice"), b.Register(t, "bob"), c.Register(t, "charlie")
	allowed := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	restricted := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat", "room_version": "10",
		"initial_state": []any{map[string]any{"type": "m.room.join_rules", "state_key": "", "content": map[string]any{"join_rule": "restricted",
			"allow": []any{map[string]any{"type": "m.room_membership", "room_id": allowed}}}}}}).Str("room_id")
	join := func(s *hstest.Server, u *hstest.User, room string, via ...string) *hstest.Response {
		q := ""
		for _, v := range via {
			q += "&server_name=" + url.QueryEscape(v)
		}
		return s.Do(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(room)+"?"+q[min(1, len(q)):], u.Token, map[string]any{})
	}
	for _, room := range []string{allowed, restricted} {
		if r := join(b, bob, room, a.ServerName); r.Status != 200 {
			t.Fatalf("bob joining: %d %s", r.Status, r.Body)
		}
	}
	// Bob may invite (so his server could authorise joins), then leaves
	// the allowed room: his server no longer knows who is in it.
	a.MustOK(t, "PUT", hstest.Path("/rooms/%s/state/m.room.power_levels/", restricted), alice.Token, map[string]any{"invite": 50, "users": map[string]any{alice.UserID: 100, bob.UserID: 100}})
	waitState(t, b, bob, restricted, "m.room.power_levels", func(c json.RawMessage) bool { return contains(c, bob.UserID) })
	b.MustOK(t, "POST", hstest.Path("/rooms/%s/leave", allowed), bob.Token, map[string]any{})
	if r := join(c, charlie, allowed, a.ServerName); r.Status != 200 {
		t.Fatalf("charlie joining the allowed room: %d %s", r.Status, r.Body)
	}
	if r := join(c, charlie, restricted, b.ServerName); r.Status == 200 {
		t.Fatalf("bob's server vouched for charlie's join from a room it left")
	}
	if r := join(c, charlie, restricted, b.ServerName, a.ServerName); r.Status != 200 {
		t.Fatalf("charlie's join through the server still in the allowed room: %d %s", r.Status, r.Body)
	}
}
