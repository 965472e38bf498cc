package fedtest

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"conclave/internal/homeserver/hstest"
)

func v1Path(format string, args ...string) string {
	p := hstest.Path(format, args...)
	return "/_matrix/client/v1" + p[len("/_matrix/client/v3"):]
}

var worldReadable = []any{map[string]any{"type": "m.room.history_visibility", "state_key": "", "content": map[string]any{"history_visibility": "world_readable"}}}

func newRoom(t *testing.T, s *hstest.Server, u *hstest.User, space bool, extra map[string]any) string {
	t.Helper()
	body := map[string]any{"preset": "public_chat", "initial_state": worldReadable}
	if space {
		body["creation_content"] = map[string]any{"type": "m.space"}
	}
	for k, v := range extra {
		body[k] = v
	}
	return s.MustOK(t, "POST", "/_matrix/client/v3/createRoom", u.Token, body).Str("room_id")
}

func linkChild(t *testing.T, s *hstest.Server, u *hstest.User, parent, child string, via string, suggested bool) {
	t.Helper()
	s.MustOK(t, "PUT", hstest.Path("/rooms/%s/state/m.space.child/%s", parent, child), u.Token, map[string]any{"via": []string{via}, "suggested": suggested})
}

// hierarchyIDs is the room IDs of a whole /hierarchy walk.
func hierarchyIDs(t *testing.T, s *hstest.Server, u *hstest.User, root, query string) []string {
	t.Helper()
	r := s.MustOK(t, "GET", v1Path("/rooms/%s/hierarchy", root)+query, u.Token, nil)
	var out struct {
		Rooms []struct {
			RoomID string `json:"room_id"`
		} `json:"rooms"`
	}
	if err := json.Unmarshal(r.Body, &out); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, x := range out.Rooms {
		ids = append(ids, x.RoomID)
	}
	return ids
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestFederatedSpaces is Complement's TestFederatedClientSpaces: a space on
// A whose tree runs through rooms and spaces of B and back to A.
//
//	ROOT(A) ── R1(A), SS1(A), r2(B)
//	SS1(A) ── ss2(B), r3(B)
//	ss2(B) ── R4(A)
func TestFederatedSpaces(t *testing.T) {
	ss := hstest.StartFederation(t, 2)
	a, b := ss[0], ss[1]
	alice, bob := a.CreateUser(t, "alice"), b.CreateUser(t, "bob")
	A, B := a.ServerName, b.ServerName
	root, r1, ss1, r4 := newRoom(t, a, alice, true, nil), newRoom(t, a, alice, false, nil), newRoom(t, a, alice, true, nil), newRoom(t, a, alice, false, nil)
	r2, ss2, r3 := newRoom(t, b, bob, false, nil), newRoom(t, b, bob, true, nil), newRoom(t, b, bob, false, nil)
	linkChild(t, a, alice, root, r1, A, true)
	linkChild(t, a, alice, root, ss1, A, false)
	linkChild(t, a, alice, root, r2, B, true)
	linkChild(t, a, alice, ss1, ss2, B, false)
	linkChild(t, a, alice, ss1, r3, B, false)
	linkChild(t, b, bob, ss2, r4, A, false)

	if ids := hierarchyIDs(t, a, alice, root, ""); !sameSet(ids, []string{root, r1, r2, r3, r4, ss1, ss2}) {
		t.Fatalf("whole tree through A: %v", ids)
	}
	// The other way round: B walks A's space, asking A about it.
	if ids := hierarchyIDs(t, b, bob, ss2, ""); !sameSet(ids, []string{ss2, r4}) {
		t.Fatalf("B's space through B: %v", ids)
	}
	// max_depth and suggested_only hold across servers.
	if ids := hierarchyIDs(t, a, alice, root, "?max_depth=1"); !sameSet(ids, []string{root, r1, ss1, r2}) {
		t.Fatalf("max_depth=1: %v", ids)
	}
	if ids := hierarchyIDs(t, a, alice, root, "?suggested_only=true"); !sameSet(ids, []string{root, r1, r2}) {
		t.Fatalf("suggested_only: %v", ids)
	}
	// Pages of a walk that crosses servers.
	var paged []string
	from := ""
	for i := 0; i < 10; i++ {
		q := "?limit=2"
		if from != "" {
			q += "&from=" + from
		}
		r := a.MustOK(t, "GET", v1Path("/rooms/%s/hierarchy", root)+q, alice.Token, nil)
		rooms, _ := r.JSON["rooms"].([]any)
		for _, x := range rooms {
			paged = append(paged, x.(map[string]any)["room_id"].(string))
		}
		if from = r.Str("next_batch"); from == "" {
			break
		}
	}
	if !slices.Equal(paged, hierarchyIDs(t, a, alice, root, "")) {
		t.Fatalf("pages %v", paged)
	}

	// The federation endpoint itself: the room, its children_state, the
	// children B is in.
	raw, err := a.HS.FedClient.Hierarchy(context.Background(), B, ss2, false)
	if err != nil {
		t.Fatal(err)
	}
	var sp struct {
		Room struct {
			RoomID        string            `json:"room_id"`
			RoomType      string            `json:"room_type"`
			ChildrenState []json.RawMessage `json:"children_state"`
		} `json:"room"`
		Children     []json.RawMessage `json:"children"`
		Inaccessible []string          `json:"inaccessible_children"`
	}
	if err := json.Unmarshal(raw, &sp); err != nil || sp.Room.RoomID != ss2 || sp.Room.RoomType != "m.space" || len(sp.Room.ChildrenState) != 1 ||
		len(sp.Children) != 0 || sp.Inaccessible == nil {
		t.Fatalf("federation hierarchy of ss2: %s %v", raw, err)
	}
	// A room B is not in: 404.
	if _, err := a.HS.FedClient.Hierarchy(context.Background(), B, root, false); err == nil {
		t.Fatal("B answered about a room it is not in")
	}

	// Room summaries of B's rooms through A, with via.
	r := a.MustOK(t, "GET", v1Path("/room_summary/%s", r2)+"?via="+B, alice.Token, nil)
	if r.Str("room_id") != r2 || r.Str("join_rule") != "public" || r.JSON["world_readable"] != true {
		t.Fatalf("remote summary: %s", r.Body)
	}
	r5 := newRoom(t, b, bob, false, nil)
	if r := a.Do(t, "GET", v1Path("/room_summary/%s", r5), alice.Token, nil); r.Status != 404 {
		t.Fatalf("remote summary without via: %d %s", r.Status, r.Body)
	}
	r = a.MustOK(t, "GET", "/_matrix/client/unstable/im.nheko.summary/rooms/"+ss2+"/summary?via="+B, "", nil)
	if r.Str("room_type") != "m.space" {
		t.Fatalf("unstable remote summary: %s", r.Body)
	}
	// An invite-only room of B: hidden from A's users until one is invited.
	priv := b.MustOK(t, "POST", "/_matrix/client/v3/createRoom", bob.Token, map[string]any{"preset": "private_chat", "name": "Private"}).Str("room_id")
	if r := a.Do(t, "GET", v1Path("/room_summary/%s", priv)+"?via="+B, alice.Token, nil); r.Status != 404 {
		t.Fatalf("private remote room: %d %s", r.Status, r.Body)
	}
	b.MustOK(t, "POST", hstest.Path("/rooms/%s/invite", priv), bob.Token, map[string]any{"user_id": alice.UserID})
	// (B's refusal before the invite was not kept.)
	r = a.MustOK(t, "GET", v1Path("/room_summary/%s", priv)+"?via="+B, alice.Token, nil)
	if r.Str("name") != "Private" || r.Str("membership") != "invite" {
		t.Fatalf("invited to the private remote room: %s", r.Body)
	}
	carol := a.CreateUser(t, "carol")
	if r := a.Do(t, "GET", v1Path("/room_summary/%s", priv)+"?via="+B, carol.Token, nil); r.Status != 404 {
		t.Fatalf("carol, not invited: %d %s", r.Status, r.Body)
	}
}

// TestFederatedRestrictedSpaces is Complement's
// TestRestrictedRoomsSpacesSummaryFederation: a room on B restricted to the
// members of a space on A shows in the space's hierarchy for A's users in
// the space once B can tell (it is in the space), and never for the others.
func TestFederatedRestrictedSpaces(t *testing.T) {
	ss := hstest.StartFederation(t, 2)
	a, b := ss[0], ss[1]
	alice, bob, charlie := a.CreateUser(t, "alice"), a.CreateUser(t, "bob"), b.CreateUser(t, "charlie")
	A, B := a.ServerName, b.ServerName
	space := newRoom(t, a, alice, true, map[string]any{"name": "Space"})
	room := newRoom(t, b, charlie, false, map[string]any{"name": "Room", "room_version": "8", "initial_state": []any{
		map[string]any{"type": "m.room.join_rules", "state_key": "", "content": map[string]any{"join_rule": "restricted",
			"allow": []any{map[string]any{"type": "m.room_membership", "room_id": space, "via": []string{A}}}}},
	}})
	linkChild(t, a, alice, space, room, B, false)

	// B is not in the space: it cannot tell whether A may see the room.
	if ids := hierarchyIDs(t, a, alice, space, ""); !sameSet(ids, []string{space}) {
		t.Fatalf("before B is in the space, alice: %v", ids)
	}
	if ids := hierarchyIDs(t, a, bob, space, ""); !sameSet(ids, []string{space}) {
		t.Fatalf("before, bob: %v", ids)
	}
	b.MustOK(t, "POST", hstest.Path("/join/%s", space)+"?server_name="+A, charlie.Token, map[string]any{})
	// B's refusal was not kept: asked again, it now answers (Complement's
	// TestRestrictedRoomsSpacesSummaryFederation asks right away).
	if ids := hierarchyIDs(t, a, alice, space, ""); !sameSet(ids, []string{space, room}) {
		t.Fatalf("alice, in the space: %v", ids)
	}
	if ids := hierarchyIDs(t, a, bob, space, ""); !sameSet(ids, []string{space}) {
		t.Fatalf("bob, not in the space: %v", ids)
	}
	// The room's summary likewise.
	if r := a.MustOK(t, "GET", v1Path("/room_summary/%s", room)+"?via="+B, alice.Token, nil); r.Str("join_rule") != "restricted" {
		t.Fatalf("alice's summary: %s", r.Body)
	}
	if r := a.Do(t, "GET", v1Path("/room_summary/%s", room)+"?via="+B, bob.Token, nil); r.Status != 404 {
		t.Fatalf("bob's summary: %d %s", r.Status, r.Body)
	}
}
