package clientapi_test

import (
	"testing"

	"conclave/internal/homeserver/hstest"
)

// A local user joining an upgraded room keeps their push rules for the room
// it replaces (Client-Server API, "Room upgrades": the server should
// transfer notification settings): the upgrader at the upgrade, others when
// they join, and likewise for a manual upgrade (createRoom naming a
// predecessor). Complement TestPushRuleRoomUpgrade.
func TestUpgradeCarriesPushRules(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	old := createRoom(t, s, alice, map[string]any{"preset": "public_chat", "room_version": "10"})
	s.MustOK(t, "POST", hstest.Path("/join/%s", old), bob.Token, map[string]any{})
	mute := map[string]any{"actions": []string{"dont_notify"}}
	for _, u := range []*hstest.User{alice, bob} {
		s.MustOK(t, "PUT", hstest.Path("/pushrules/global/room/%s", old), u.Token, mute)
	}
	hasRule := func(u *hstest.User, roomID string) bool {
		t.Helper()
		r := s.Do(t, "GET", hstest.Path("/pushrules/global/room/%s", roomID), u.Token, nil)
		if r.Status != 200 {
			return false
		}
		actions, _ := r.JSON["actions"].([]any)
		return len(actions) == 1 && actions[0] == "dont_notify"
	}

	newRoom := s.MustOK(t, "POST", hstest.Path("/rooms/%s/upgrade", old), alice.Token, map[string]string{"new_version": "11"}).Str("replacement_room")
	if !hasRule(alice, newRoom) || !hasRule(alice, old) {
		t.Fatal("the upgrader's rule was not copied to the new room")
	}
	if hasRule(bob, newRoom) {
		t.Fatal("bob's rule copied before he joined")
	}
	s.MustOK(t, "POST", hstest.Path("/join/%s", newRoom), bob.Token, map[string]any{})
	if !hasRule(bob, newRoom) {
		t.Fatal("bob's rule was not copied when he joined")
	}

	// A manual upgrade: a room whose create event names a predecessor.
	manual := createRoom(t, s, alice, map[string]any{"preset": "public_chat", "room_version": "11",
		"creation_content": map[string]any{"predecessor": map[string]string{"room_id": newRoom}}})
	if !hasRule(alice, manual) {
		t.Fatal("the rule was not copied to a manually upgraded room")
	}
}

// Room tags (GET/PUT/DELETE /user/{userId}/rooms/{roomId}/tags) follow a
// room upgrade like push rules: a member who joins the new room finds their
// tags there, and m.direct lists the new room beside the old one.
func TestTagsAndUpgrade(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	old := createRoom(t, s, alice, map[string]any{"preset": "public_chat", "room_version": "10"})
	s.MustOK(t, "POST", hstest.Path("/join/%s", old), bob.Token, map[string]any{})
	tags := func(u *hstest.User, roomID string) map[string]any {
		t.Helper()
		r := s.MustOK(t, "GET", hstest.Path("/user/%s/rooms/%s/tags", u.UserID, roomID), u.Token, nil)
		m, ok := r.JSON["tags"].(map[string]any)
		if !ok {
			t.Fatalf("tags: %s", r.Body)
		}
		return m
	}
	if len(tags(bob, old)) != 0 {
		t.Fatal("tags before any")
	}
	s.MustOK(t, "PUT", hstest.Path("/user/%s/rooms/%s/tags/m.favourite", bob.UserID, old), bob.Token, map[string]any{"order": 0.25})
	s.MustOK(t, "PUT", hstest.Path("/user/%s/rooms/%s/tags/u.work", bob.UserID, old), bob.Token, map[string]any{})
	s.MustOK(t, "PUT", hstest.Path("/user/%s/rooms/%s/tags/u.gone", bob.UserID, old), bob.Token, map[string]any{})
	s.MustOK(t, "DELETE", hstest.Path("/user/%s/rooms/%s/tags/u.gone", bob.UserID, old), bob.Token, nil)
	if tg := tags(bob, old); len(tg) != 2 || tg["m.favourite"].(map[string]any)["order"] != 0.25 {
		t.Fatalf("tags: %v", tg)
	}
	if r := s.Do(t, "PUT", hstest.Path("/user/%s/rooms/%s/tags/x", bob.UserID, old), bob.Token, map[string]any{"order": "high"}); r.Status != 400 {
		t.Fatalf("bad order: %d %s", r.Status, r.Body)
	}
	if r := s.Do(t, "GET", hstest.Path("/user/%s/rooms/%s/tags", bob.UserID, old), alice.Token, nil); r.Status != 403 {
		t.Fatalf("another user's tags: %d %s", r.Status, r.Body)
	}
	s.MustOK(t, "PUT", hstest.Path("/user/%s/account_data/m.direct", bob.UserID), bob.Token, map[string]any{alice.UserID: []string{old}})

	newRoom := s.MustOK(t, "POST", hstest.Path("/rooms/%s/upgrade", old), alice.Token, map[string]string{"new_version": "11"}).Str("replacement_room")
	s.MustOK(t, "POST", hstest.Path("/join/%s", newRoom), bob.Token, map[string]any{})
	if tg := tags(bob, newRoom); len(tg) != 2 || tg["m.favourite"] == nil || tg["u.work"] == nil {
		t.Fatalf("tags in the new room: %v", tg)
	}
	d := s.MustOK(t, "GET", hstest.Path("/user/%s/account_data/m.direct", bob.UserID), bob.Token, nil)
	if rooms, _ := d.JSON[alice.UserID].([]any); len(rooms) != 2 || rooms[1] != newRoom {
		t.Fatalf("m.direct: %s", d.Body)
	}
}
