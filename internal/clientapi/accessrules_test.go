package clientapi_test

import (
	"net/http"
	"testing"

	"conclave/internal/config"
	"conclave/internal/homeserver/hstest"
)

// externalServer is the circle's external server in these tests: only its
// name matters (federation is off, invites to it are plain state events).
const externalServer = "external.example"

func withExternals(c *config.Config) { c.ExternalServers = []string{externalServer} }

func accessRule(t *testing.T, s *hstest.Server, u *hstest.User, roomID string) string {
	t.Helper()
	r := s.Do(t, "GET", hstest.Path("/rooms/%s/state/im.vector.room.access_rules/", roomID), u.Token, nil)
	if r.Status == http.StatusNotFound {
		return ""
	}
	if r.Status != http.StatusOK {
		t.Fatalf("access rules: %d %s", r.Status, r.Body)
	}
	return r.Str("rule")
}

// Room access rules (Tchap's im.vector.room.access_rules, docs/rules.md):
// defaults at createRoom, restricted rooms refuse externals, unrestricted
// ones take them after an invite but never with power, and the rule only
// goes from restricted to unrestricted.
func TestAccessRulesRestrictedUnrestricted(t *testing.T) {
	s := hstest.Start(t, withExternals)
	alice := s.CreateUser(t, "alice")
	eve := "@eve:" + externalServer

	// Defaults: private rooms restricted, public rooms restricted.
	room := createRoom(t, s, alice, map[string]any{"preset": "private_chat"})
	if got := accessRule(t, s, alice, room); got != "restricted" {
		t.Fatalf("private room rule %q", got)
	}
	if got := accessRule(t, s, alice, createRoom(t, s, alice, map[string]any{"preset": "public_chat"})); got != "restricted" {
		t.Fatalf("public room rule %q", got)
	}

	// Restricted: an external may not be invited.
	invite := hstest.Path("/rooms/%s/invite", room)
	expectErr(t, s.Do(t, "POST", invite, alice.Token, map[string]any{"user_id": eve}), http.StatusForbidden, "M_FORBIDDEN")
	// Nor in createRoom's invite list.
	expectErr(t, s.Do(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"invite": []string{eve}}), http.StatusForbidden, "M_FORBIDDEN")

	// A rule must be valid; restricted → unrestricted is the only change.
	rules := hstest.Path("/rooms/%s/state/im.vector.room.access_rules/", room)
	expectErr(t, s.Do(t, "PUT", rules, alice.Token, map[string]any{"rule": "open"}), http.StatusForbidden, "M_FORBIDDEN")
	s.MustOK(t, "PUT", rules, alice.Token, map[string]any{"rule": "unrestricted"})
	expectErr(t, s.Do(t, "PUT", rules, alice.Token, map[string]any{"rule": "restricted"}), http.StatusForbidden, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "PUT", rules, alice.Token, map[string]any{"rule": "direct"}), http.StatusForbidden, "M_FORBIDDEN")

	// Unrestricted: the external may be invited…
	s.MustOK(t, "POST", invite, alice.Token, map[string]any{"user_id": eve})
	// … but never given power, and users_default stays 0.
	pl := hstest.Path("/rooms/%s/state/m.room.power_levels/", room)
	levels := s.MustOK(t, "GET", pl, alice.Token, nil).JSON
	users := levels["users"].(map[string]any)
	users[eve] = 50
	expectErr(t, s.Do(t, "PUT", pl, alice.Token, levels), http.StatusForbidden, "M_FORBIDDEN")
	users[eve] = 0
	s.MustOK(t, "PUT", pl, alice.Token, levels)
	levels["users_default"] = 10
	expectErr(t, s.Do(t, "PUT", pl, alice.Token, levels), http.StatusForbidden, "M_FORBIDDEN")

	// Only restricted rooms may be published.
	expectErr(t, s.Do(t, "PUT", hstest.Path("/directory/list/room/%s", room), alice.Token, map[string]any{"visibility": "public"}),
		http.StatusForbidden, "M_FORBIDDEN")
	other := createRoom(t, s, alice, map[string]any{"preset": "private_chat"})
	s.MustOK(t, "PUT", hstest.Path("/directory/list/room/%s", other), alice.Token, map[string]any{"visibility": "public"})
	// A published room keeps restricted.
	expectErr(t, s.Do(t, "PUT", hstest.Path("/rooms/%s/state/im.vector.room.access_rules/", other), alice.Token, map[string]any{"rule": "unrestricted"}),
		http.StatusForbidden, "M_FORBIDDEN")

	// createRoom: a given rule must be valid and match is_direct; a room
	// published at creation must be restricted.
	for _, body := range []map[string]any{
		{"initial_state": []any{map[string]any{"type": "im.vector.room.access_rules", "content": map[string]any{"rule": "nope"}}}},
		{"initial_state": []any{map[string]any{"type": "im.vector.room.access_rules", "content": map[string]any{"rule": "direct"}}}},
		{"is_direct": true, "initial_state": []any{map[string]any{"type": "im.vector.room.access_rules", "content": map[string]any{"rule": "restricted"}}}},
		{"is_direct": true, "preset": "public_chat"},
		{"power_level_content_override": map[string]any{"users_default": 50},
			"initial_state": []any{map[string]any{"type": "im.vector.room.access_rules", "content": map[string]any{"rule": "unrestricted"}}}},
	} {
		expectErr(t, s.Do(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, body), http.StatusBadRequest, "M_INVALID_PARAM")
	}
	expectErr(t, s.Do(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"visibility": "public",
		"initial_state": []any{map[string]any{"type": "im.vector.room.access_rules", "content": map[string]any{"rule": "unrestricted"}}}}),
		http.StatusForbidden, "M_FORBIDDEN")
	if got := accessRule(t, s, alice, createRoom(t, s, alice, map[string]any{
		"initial_state": []any{map[string]any{"type": "im.vector.room.access_rules", "content": map[string]any{"rule": "unrestricted"}}}})); got != "unrestricted" {
		t.Fatalf("given rule %q", got)
	}
}

// --default-access-rule sets the rule of private rooms created without one.
func TestAccessRulesDefault(t *testing.T) {
	s := hstest.Start(t, withExternals, func(c *config.Config) { c.DefaultAccessRule = "unrestricted" })
	alice := s.CreateUser(t, "alice")
	room := createRoom(t, s, alice, map[string]any{"preset": "private_chat"})
	if got := accessRule(t, s, alice, room); got != "unrestricted" {
		t.Fatalf("private room rule %q", got)
	}
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/invite", room), alice.Token, map[string]any{"user_id": "@eve:" + externalServer})
	if got := accessRule(t, s, alice, createRoom(t, s, alice, map[string]any{"preset": "public_chat"})); got != "restricted" {
		t.Fatalf("public room rule %q", got)
	}
}

// Direct rooms: two members at most, no name, topic or avatar, never a
// public join rule.
func TestAccessRulesDirect(t *testing.T) {
	s := hstest.Start(t, withExternals)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	carol := s.CreateUser(t, "carol")
	dm := createRoom(t, s, alice, map[string]any{"is_direct": true, "invite": []string{bob.UserID}})
	if got := accessRule(t, s, alice, dm); got != "direct" {
		t.Fatalf("direct room rule %q", got)
	}
	s.MustOK(t, "POST", hstest.Path("/join/%s", dm), bob.Token, map[string]any{})
	expectErr(t, s.Do(t, "POST", hstest.Path("/rooms/%s/invite", dm), alice.Token, map[string]any{"user_id": carol.UserID}), http.StatusForbidden, "M_FORBIDDEN")
	for typ, content := range map[string]map[string]any{
		"m.room.name":       {"name": "n"},
		"m.room.topic":      {"topic": "t"},
		"m.room.avatar":     {"url": "mxc://x/y"},
		"m.room.join_rules": {"join_rule": "public"},
	} {
		expectErr(t, s.Do(t, "PUT", hstest.Path("/rooms/%s/state/%s/", dm, typ), alice.Token, content), http.StatusForbidden, "M_FORBIDDEN")
	}
	// The two members may leave and come back.
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/leave", dm), bob.Token, map[string]any{})
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/invite", dm), alice.Token, map[string]any{"user_id": bob.UserID})
	// A DM with two invitees fails at the second.
	expectErr(t, s.Do(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"is_direct": true, "invite": []string{bob.UserID, carol.UserID}}),
		http.StatusForbidden, "M_FORBIDDEN")
	// A room of three cannot turn direct.
	room := createRoom(t, s, alice, map[string]any{"preset": "private_chat", "invite": []string{bob.UserID, carol.UserID}})
	expectErr(t, s.Do(t, "PUT", hstest.Path("/rooms/%s/state/im.vector.room.access_rules/", room), alice.Token, map[string]any{"rule": "direct"}),
		http.StatusForbidden, "M_FORBIDDEN")
}

// Externals cannot create rooms.
func TestAccessRulesExternalCreator(t *testing.T) {
	s := hstest.Start(t, func(c *config.Config) { c.ExternalServers = []string{c.ServerName} })
	eve := s.CreateUser(t, "eve")
	expectErr(t, s.Do(t, "POST", "/_matrix/client/v3/createRoom", eve.Token, map[string]any{}), http.StatusForbidden, "M_FORBIDDEN")
}

// A room upgrade keeps the access rule.
func TestAccessRulesUpgrade(t *testing.T) {
	s := hstest.Start(t, withExternals)
	alice := s.CreateUser(t, "alice")
	room := createRoom(t, s, alice, map[string]any{"preset": "private_chat", "room_version": "10",
		"initial_state": []any{map[string]any{"type": "im.vector.room.access_rules", "content": map[string]any{"rule": "unrestricted"}}}})
	newRoom := s.MustOK(t, "POST", hstest.Path("/rooms/%s/upgrade", room), alice.Token, map[string]any{"new_version": "11"}).Str("replacement_room")
	if got := accessRule(t, s, alice, newRoom); got != "unrestricted" {
		t.Fatalf("upgraded room rule %q", got)
	}
}
