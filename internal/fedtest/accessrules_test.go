package fedtest

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"conclave/internal/config"
	"conclave/internal/homeserver/hstest"
)

// Room access rules across servers (docs/rules.md). A is a ministry's
// server that knows E as the circle's external server; B is another
// ministry's server configured without the rules (an older or misconfigured
// server: what A must not trust); E is the external server.
func TestAccessRulesAcrossServers(t *testing.T) {
	hs := hstest.StartFederationEach(t, 3, func(i int, c *config.Config) {
		if i == 0 {
			c.ExternalServers = []string{c.FederationAllow[2]}
		}
	})
	a, b, e := hs[0], hs[1], hs[2]
	alice := a.Register(t, "alice")
	bob := b.Register(t, "bob")
	eve := e.Register(t, "eve")

	// An external invited into a restricted room on the ministry's server
	// is refused by its writer: nothing reaches E.
	room := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	if r := a.Do(t, "POST", hstest.Path("/rooms/%s/invite", room), alice.Token, map[string]any{"user_id": eve.UserID}); r.Status != http.StatusForbidden || r.Errcode() != "M_FORBIDDEN" {
		t.Fatalf("invite of an external into a restricted room: %d %s", r.Status, r.Body)
	}

	// Nor may the external join it through E, though its join rule is
	// public: A refuses make_join.
	if r := e.Do(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(room)+"?server_name="+url.QueryEscape(a.ServerName), eve.Token, map[string]any{}); r.Status == http.StatusOK {
		t.Fatalf("external joined a restricted room: %s", r.Body)
	}

	// An invite made on B, whose writer does not know the rules, reaches
	// A over federation and is soft-failed there: stored, never in the
	// room's state.
	joinVia(t, b, bob, room, a.ServerName)
	waitJoined(t, a, alice, room, bob.UserID)
	a.MustOK(t, "PUT", hstest.Path("/rooms/%s/state/m.room.power_levels/", room), alice.Token,
		map[string]any{"users": map[string]int{alice.UserID: 100, bob.UserID: 100}})
	waitState(t, b, bob, room, "m.room.power_levels", func(c json.RawMessage) bool { return bytes.Contains(c, []byte(bob.UserID)) })
	b.MustOK(t, "POST", hstest.Path("/rooms/%s/invite", room), bob.Token, map[string]any{"user_id": eve.UserID})
	inviteID := b.MustOK(t, "GET", hstest.Path("/rooms/%s/state/m.room.member/%s", room, eve.UserID)+"?format=event", bob.Token, nil).Str("event_id")
	waitUntil(t, "A stores B's invite", func() bool {
		_, err := a.HS.Rooms.AnyEvent(context.Background(), inviteID)
		return err == nil
	})
	if r := a.Do(t, "GET", hstest.Path("/rooms/%s/state/m.room.member/%s", room, eve.UserID), alice.Token, nil); r.Status != http.StatusNotFound {
		t.Fatalf("A took the external's invite into the room's state: %d %s", r.Status, r.Body)
	}

	// Unrestricted: the external is invited across servers and joins.
	open := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "private_chat",
		"initial_state": []any{map[string]any{"type": "im.vector.room.access_rules", "content": map[string]any{"rule": "unrestricted"}}}}).Str("room_id")
	a.MustOK(t, "POST", hstest.Path("/rooms/%s/invite", open), alice.Token, map[string]any{"user_id": eve.UserID})
	// E signed the invite before A wrote it: eve holds it already.
	joinVia(t, e, eve, open, a.ServerName)
	waitJoined(t, a, alice, open, eve.UserID)
}
