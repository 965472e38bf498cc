package fedtest

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"testing"

	"conclave/internal/config"
	"conclave/internal/homeserver/hstest"
)

// A server joining a room while a member's server is down, and whose keys
// it never fetched, gets them from its trusted key server (the room's
// resident server, which kept them): C verifies Bob's events, so Bob is a
// member on C and Carol sees what he said.
func TestJoinWhileMemberServerDownKeysFromNotary(t *testing.T) {
	hs := hstest.StartFederationEach(t, 3, func(i int, c *config.Config) {
		if i == 2 {
			c.TrustedKeyServers = []string{c.FederationAllow[0]}
		}
	})
	a, b, c := hs[0], hs[1], hs[2]
	alice := a.Register(t, "alice")
	bob := b.Register(t, "bob")
	carol := c.Register(t, "carol")
	roomID := createPublicRoom(t, a, alice)
	joinVia(t, b, bob, roomID, a.ServerName)
	b.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/hello", roomID), bob.Token, map[string]any{"msgtype": "m.text", "body": "hello from bob"})
	waitBody(t, a, alice, roomID, "hello from bob")

	b.Stop()
	joinVia(t, c, carol, roomID, a.ServerName)
	var members struct {
		Joined map[string]json.RawMessage `json:"joined"`
	}
	json.Unmarshal(c.MustOK(t, "GET", hstest.Path("/rooms/%s/joined_members", roomID), carol.Token, nil).Body, &members)
	if _, ok := members.Joined[bob.UserID]; !ok {
		t.Fatalf("bob, whose server is down, is not a member on C: %v", slices.Sorted(maps.Keys(members.Joined)))
	}
	waitBody(t, c, carol, roomID, "hello from bob")
	// C has B's key response as B signed it and A countersigned it.
	resp, err := c.HS.Store.ServerKeyResponse(context.Background(), b.ServerName)
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Signatures map[string]json.RawMessage `json:"signatures"`
	}
	json.Unmarshal(resp.JSON, &r)
	if r.Signatures[b.ServerName] == nil || r.Signatures[a.ServerName] == nil {
		t.Fatalf("stored response of B signed by %v, want B and A", r.Signatures)
	}
}
