package clientapi_test

import (
	"net/http"
	"testing"

	"conclave/internal/homeserver/hstest"
)

// Room version 12 (MSC4289, privileged creators) through createRoom, the
// state API and upgrades (Complement TestMSC4289PrivilegedRoomCreators*,
// TestMSC4291RoomIDAsHashOfCreateEvent_CannotSendCreateEvent).
func TestRoomVersion12Creators(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	charlie := s.CreateUser(t, "charlie")

	// Upgrading needs 150 by default: above any admin a creator names.
	room := createRoom(t, s, alice, map[string]any{"room_version": "12"})
	pl := stateContent(t, s, alice, room, "m.room.power_levels")
	if ev, _ := pl["events"].(map[string]any); ev["m.room.tombstone"] != float64(150) {
		t.Fatalf("default power levels: %v", pl)
	}
	// A creator listed in users is malformed content: 400, not 403.
	r := s.Do(t, "PUT", hstest.Path("/rooms/%s/state/m.room.power_levels/", room), alice.Token, map[string]any{"users": map[string]int{alice.UserID: 100}})
	expectErr(t, r, http.StatusBadRequest, "M_INVALID_PARAM")
	r = s.Do(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"room_version": "12",
		"power_level_content_override": map[string]any{"users": map[string]int{alice.UserID: 100}}})
	expectErr(t, r, http.StatusBadRequest, "M_INVALID_PARAM")
	for _, bad := range []any{"not-an-array", []any{"@foo:example.com", 42}, []any{"not-a-user-id"}, []any{"@invalid:dom$ain$.com"}} {
		r = s.Do(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"room_version": "12",
			"creation_content": map[string]any{"additional_creators": bad}})
		expectErr(t, r, http.StatusBadRequest, "M_INVALID_PARAM")
	}
	// A room has one create event, whatever its version.
	for _, v := range []string{"11", "12"} {
		id := createRoom(t, s, alice, map[string]any{"room_version": v})
		r = s.Do(t, "PUT", hstest.Path("/rooms/%s/state/m.room.create/", id), alice.Token, map[string]any{"room_version": v, "entropy": 100})
		expectErr(t, r, http.StatusBadRequest, "M_INVALID_PARAM")
	}

	// The invitees of a trusted private chat are its additional creators,
	// after those the client named, and not admins in the power levels.
	dm := createRoom(t, s, alice, map[string]any{"room_version": "12", "preset": "trusted_private_chat", "is_direct": true,
		"invite": []string{bob.UserID}, "creation_content": map[string]any{"additional_creators": []string{charlie.UserID}}})
	create := stateContent(t, s, alice, dm, "m.room.create")
	if ac, _ := create["additional_creators"].([]any); len(ac) != 2 || ac[0] != charlie.UserID || ac[1] != bob.UserID {
		t.Fatalf("trusted private chat create: %v", create)
	}
	if users, _ := stateContent(t, s, alice, dm, "m.room.power_levels")["users"].(map[string]any); len(users) != 0 {
		t.Fatalf("trusted private chat users: %v", users)
	}

	// An upgrade to 12 names additional creators; they and the upgrader
	// leave the power levels' users, others keep their levels.
	old := createRoom(t, s, alice, map[string]any{"room_version": "11", "preset": "public_chat"})
	for _, u := range []*hstest.User{bob, charlie} {
		s.MustOK(t, "POST", hstest.Path("/join/%s", old), u.Token, map[string]any{})
	}
	s.MustOK(t, "PUT", hstest.Path("/rooms/%s/state/m.room.power_levels/", old), alice.Token,
		map[string]any{"users": map[string]int{alice.UserID: 100, bob.UserID: 100, charlie.UserID: 50}})
	r = s.Do(t, "POST", hstest.Path("/rooms/%s/upgrade", old), alice.Token, map[string]any{"new_version": "12", "additional_creators": []any{"nope"}})
	expectErr(t, r, http.StatusBadRequest, "M_INVALID_PARAM")
	r = s.MustOK(t, "POST", hstest.Path("/rooms/%s/upgrade", old), alice.Token, map[string]any{"new_version": "12", "additional_creators": []string{bob.UserID}})
	newRoom := r.Str("replacement_room")
	create = stateContent(t, s, alice, newRoom, "m.room.create")
	if ac, _ := create["additional_creators"].([]any); len(ac) != 1 || ac[0] != bob.UserID {
		t.Fatalf("upgraded create: %v", create)
	}
	if users, _ := stateContent(t, s, alice, newRoom, "m.room.power_levels")["users"].(map[string]any); len(users) != 1 || users[charlie.UserID] != float64(50) {
		t.Fatalf("upgraded users: %v", users)
	}
}
