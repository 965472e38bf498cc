package clientapi_test

import (
	"net/http"
	"testing"

	"conclave/internal/homeserver/hstest"
)

// A restricted room (room version 8+) lets in a local user who is joined to
// a room its allow list names; the server names one of its users who may
// invite in join_authorised_via_users_server (Client-Server API, "Restricted
// rooms"). A user in none of the allowed rooms is refused, and what a
// client puts in join_authorised_via_users_server is not kept: on a
// join → join it is ignored (Complement TestRestrictedRoomsLocalJoin).
func TestRestrictedRoomLocalJoin(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	allowed := createRoom(t, s, alice, map[string]any{"preset": "public_chat"})
	room := createRoom(t, s, alice, map[string]any{"preset": "public_chat", "room_version": "8",
		"initial_state": []any{map[string]any{"type": "m.room.join_rules", "state_key": "", "content": map[string]any{
			"join_rule": "restricted",
			"allow":     []any{map[string]any{"type": "m.room_membership", "room_id": allowed}},
		}}}})
	join := hstest.Path("/join/%s", room)

	if r := s.Do(t, "POST", join, bob.Token, map[string]any{}); r.Status != http.StatusForbidden || r.Errcode() != "M_FORBIDDEN" {
		t.Fatalf("join without the allowed room: %d %s", r.Status, r.Body)
	}
	s.MustOK(t, "POST", hstest.Path("/join/%s", allowed), bob.Token, map[string]any{})
	s.MustOK(t, "POST", join, bob.Token, map[string]any{})
	ev := s.MustOK(t, "GET", hstest.Path("/rooms/%s/state/m.room.member/%s", room, bob.UserID)+"?format=event", bob.Token, nil)
	content, _ := ev.JSON["content"].(map[string]any)
	if content["membership"] != "join" || content["join_authorised_via_users_server"] != alice.UserID {
		t.Fatalf("join content: %s", ev.Body)
	}

	// join → join with a made-up authoriser: the value is dropped.
	s.MustOK(t, "PUT", hstest.Path("/rooms/%s/state/m.room.member/%s", room, bob.UserID), bob.Token,
		map[string]any{"membership": "join", "displayname": "Bobby", "join_authorised_via_users_server": "unused"})
	r := s.MustOK(t, "GET", hstest.Path("/rooms/%s/state/m.room.member/%s", room, bob.UserID), bob.Token, nil)
	if r.JSON["displayname"] != "Bobby" || r.JSON["join_authorised_via_users_server"] != nil {
		t.Fatalf("join → join content: %s", r.Body)
	}

	// Having left both rooms, bob may not come back.
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/leave", room), bob.Token, map[string]any{})
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/leave", allowed), bob.Token, map[string]any{})
	if r := s.Do(t, "POST", join, bob.Token, map[string]any{}); r.Status != http.StatusForbidden {
		t.Fatalf("join after leaving the allowed room: %d %s", r.Status, r.Body)
	}
	// Through the state API too (a self-join of a user not in the room).
	if r := s.Do(t, "PUT", hstest.Path("/rooms/%s/state/m.room.member/%s", room, bob.UserID), bob.Token,
		map[string]any{"membership": "join", "join_authorised_via_users_server": alice.UserID}); r.Status != http.StatusForbidden {
		t.Fatalf("state-API join after leaving the allowed room: %d %s", r.Status, r.Body)
	}
}

// A knock_restricted room whose allow list names no room: a join without an
// invite is forbidden (403), not "cannot tell" (Complement's
// TestKnockingInMSC3787Room).
func TestKnockRestrictedWithoutAllowedRoomsForbidden(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	room := createRoom(t, s, alice, map[string]any{"preset": "private_chat", "room_version": "10",
		"initial_state": []any{map[string]any{"type": "m.room.join_rules", "state_key": "", "content": map[string]any{"join_rule": "knock_restricted"}}}})
	if r := s.Do(t, "POST", hstest.Path("/join/%s", room), bob.Token, map[string]any{}); r.Status != http.StatusForbidden || r.Errcode() != "M_FORBIDDEN" {
		t.Fatalf("join of a knock_restricted room without allowed rooms: %d %s", r.Status, r.Body)
	}
}
