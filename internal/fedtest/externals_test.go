package fedtest

import (
	"net/http"
	"testing"

	"conclave/internal/config"
	"conclave/internal/homeserver/hstest"
)

// An external finds nobody in the user directory (Tchap), not even the
// members of the rooms they were invited to; the ministry's users do.
func TestExternalsUserDirectoryEmpty(t *testing.T) {
	hs := hstest.StartFederationEach(t, 2, func(i int, c *config.Config) {
		// Both servers know E as the externals' server; on E every local
		// user is one.
		c.ExternalServers = []string{c.FederationAllow[1]}
	})
	a, e := hs[0], hs[1]
	alice := a.Register(t, "alice")
	eve := e.Register(t, "eve")
	open := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "private_chat",
		"initial_state": []any{map[string]any{"type": "im.vector.room.access_rules", "content": map[string]any{"rule": "unrestricted"}}}}).Str("room_id")
	a.MustOK(t, "POST", hstest.Path("/rooms/%s/invite", open), alice.Token, map[string]any{"user_id": eve.UserID})
	joinVia(t, e, eve, open, a.ServerName)
	waitJoined(t, a, alice, open, eve.UserID)

	// Alice finds eve, whom she shares a room with.
	r := a.MustOK(t, "POST", "/_matrix/client/v3/user_directory/search", alice.Token, map[string]any{"search_term": "eve"})
	if n := len(r.JSON["results"].([]any)); n != 1 {
		t.Fatalf("alice's search: %s", r.Body)
	}
	// Eve finds nobody, not even alice.
	r = e.MustOK(t, "POST", "/_matrix/client/v3/user_directory/search", eve.Token, map[string]any{"search_term": "alice"})
	if n := len(r.JSON["results"].([]any)); n != 0 || r.JSON["limited"] != false {
		t.Fatalf("the external's search: %s", r.Body)
	}
	// Nor can she create a room.
	if r := e.Do(t, "POST", "/_matrix/client/v3/createRoom", eve.Token, map[string]any{}); r.Status != http.StatusForbidden {
		t.Fatalf("external createRoom: %d %s", r.Status, r.Body)
	}
}
