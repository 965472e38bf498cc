package clientapi_test

import (
	"net/http"
	"testing"

	"conclave/internal/homeserver/hstest"
)

// A user who sets im.vector.hide_profile {"hide_profile": true} leaves the
// user directory (Tchap's red list); false brings them back.
func TestHideProfileFromDirectory(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	room := createRoom(t, s, alice, map[string]any{"preset": "public_chat"})
	s.MustOK(t, "POST", hstest.Path("/join/%s", room), bob.Token, map[string]any{})
	found := func() bool {
		t.Helper()
		r := s.MustOK(t, "POST", "/_matrix/client/v3/user_directory/search", alice.Token, map[string]any{"search_term": "bob"})
		l, _ := r.JSON["results"].([]any)
		return len(l) == 1
	}
	if !found() {
		t.Fatal("bob not found before hiding")
	}
	hide := hstest.Path("/user/%s/account_data/im.vector.hide_profile", bob.UserID)
	s.MustOK(t, "PUT", hide, bob.Token, map[string]any{"hide_profile": true})
	if found() {
		t.Fatal("bob found after hiding his profile")
	}
	s.MustOK(t, "PUT", hide, bob.Token, map[string]any{"hide_profile": false})
	if !found() {
		t.Fatal("bob not found after showing his profile again")
	}
}

// A page thinned out by hidden users is filled from further rows, and
// limited stays true while more remain.
func TestHideProfileKeepsPagesFull(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	room := createRoom(t, s, alice, map[string]any{"preset": "public_chat"})
	for _, name := range []string{"user1", "user2", "user3", "user4", "user5"} {
		u := s.CreateUser(t, name)
		s.MustOK(t, "POST", hstest.Path("/join/%s", room), u.Token, map[string]any{})
		if name <= "user3" {
			s.MustOK(t, "PUT", hstest.Path("/user/%s/account_data/im.vector.hide_profile", u.UserID), u.Token, map[string]any{"hide_profile": true})
		}
	}
	r := s.MustOK(t, "POST", "/_matrix/client/v3/user_directory/search", alice.Token, map[string]any{"search_term": "user", "limit": 1})
	l, _ := r.JSON["results"].([]any)
	if len(l) != 1 || l[0].(map[string]any)["user_id"] != "@user4:"+s.Config.ServerName || r.JSON["limited"] != true {
		t.Fatalf("page: %s", r.Body)
	}
}

// In a room under the access rules, the last admin cannot leave while
// others are joined; after handing power over they can.
func TestLastAdminCannotLeave(t *testing.T) {
	s := hstest.Start(t, withExternals)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	room := createRoom(t, s, alice, map[string]any{"preset": "public_chat"})
	s.MustOK(t, "POST", hstest.Path("/join/%s", room), bob.Token, map[string]any{})
	expectErr(t, s.Do(t, "POST", hstest.Path("/rooms/%s/leave", room), alice.Token, map[string]any{}), http.StatusForbidden, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "PUT", hstest.Path("/rooms/%s/state/m.room.member/%s", room, alice.UserID), alice.Token, map[string]any{"membership": "leave"}),
		http.StatusForbidden, "M_FORBIDDEN")
	// Bob, not an admin, may go and come back.
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/leave", room), bob.Token, map[string]any{})
	// Alone, alice may leave… but first bring bob back and hand power over.
	s.MustOK(t, "POST", hstest.Path("/join/%s", room), bob.Token, map[string]any{})
	s.MustOK(t, "PUT", hstest.Path("/rooms/%s/state/m.room.power_levels/", room), alice.Token,
		map[string]any{"users": map[string]int{alice.UserID: 100, bob.UserID: 100}})
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/leave", room), alice.Token, map[string]any{})
	// The last member, even an admin, may leave.
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/leave", room), bob.Token, map[string]any{})
}
