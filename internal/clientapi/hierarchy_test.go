package clientapi_test

import (
	"net/http"
	"strings"
	"testing"

	"conclave/internal/homeserver/hstest"
)

func v1(format string, args ...string) string {
	return strings.Replace(hstest.Path(format, args...), "/v3/", "/v1/", 1)
}

// hierarchyRooms returns the room IDs of a /hierarchy page in order, each
// room's children (state keys of children_state), and next_batch.
func hierarchyRooms(t *testing.T, s *hstest.Server, u *hstest.User, root, query string) ([]string, map[string][]string, string) {
	t.Helper()
	r := s.MustOK(t, "GET", v1("/rooms/%s/hierarchy", root)+query, u.Token, nil)
	var ids []string
	children := map[string][]string{}
	rooms, _ := r.JSON["rooms"].([]any)
	for _, x := range rooms {
		m := x.(map[string]any)
		id := m["room_id"].(string)
		ids = append(ids, id)
		cs, ok := m["children_state"].([]any)
		if !ok {
			t.Fatalf("room %s without children_state: %s", id, r.Body)
		}
		for _, c := range cs {
			children[id] = append(children[id], c.(map[string]any)["state_key"].(string))
		}
	}
	next, _ := r.JSON["next_batch"].(string)
	return ids, children, next
}

func sameList(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") }

// GET /hierarchy walks a space depth first, children in order, leaving out
// what the requester may not see and what lies below it, descending only
// into spaces; max_depth, suggested_only and pagination (Client-Server API,
// "Spaces"; Complement TestClientSpacesSummary*,
// TestRestrictedRoomsSpacesSummaryLocal). GET /room_summary lists a
// restricted room's allowed_room_ids (TestRoomSummaryAllowedRoomIDs).
func TestSpaceHierarchy(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	space := map[string]any{"type": "m.space"}
	root := createRoom(t, s, alice, map[string]any{"preset": "public_chat", "name": "Root", "creation_content": space})
	r1 := createRoom(t, s, alice, map[string]any{"preset": "public_chat", "name": "R1"})
	ss1 := createRoom(t, s, alice, map[string]any{"preset": "private_chat", "name": "SS1", "creation_content": space})
	r2 := createRoom(t, s, alice, map[string]any{"preset": "public_chat", "name": "R2"})
	r3 := createRoom(t, s, alice, map[string]any{"preset": "private_chat", "name": "R3"})
	r5 := createRoom(t, s, alice, map[string]any{"preset": "public_chat", "name": "R5"})
	restricted := createRoom(t, s, alice, map[string]any{"preset": "public_chat", "room_version": "8",
		"initial_state": []any{map[string]any{"type": "m.room.join_rules", "state_key": "", "content": map[string]any{
			"join_rule": "restricted", "allow": []any{map[string]any{"type": "m.room_membership", "room_id": ss1}}}}}})
	// Children are ordered by "order", then by the link's timestamp, then
	// room ID; the orders make the expected order certain.
	link := func(parent, child, order string, suggested bool) {
		s.MustOK(t, "PUT", hstest.Path("/rooms/%s/state/m.space.child/%s", parent, child), alice.Token,
			map[string]any{"via": []string{"localhost"}, "suggested": suggested, "order": order})
	}
	link(root, r2, "c", true)
	link(root, ss1, "b", false)
	link(root, r1, "a", true)
	link(r2, r5, "", false) // R2 is no space: not followed
	link(ss1, restricted, "y", false)
	link(ss1, r3, "x", false)

	ids, children, _ := hierarchyRooms(t, s, alice, root, "")
	if !sameList(ids, []string{root, r1, ss1, r3, restricted, r2}) {
		t.Fatalf("whole tree: %v", ids)
	}
	if !sameList(children[root], []string{r1, ss1, r2}) || !sameList(children[ss1], []string{r3, restricted}) || len(children[r2]) != 0 {
		t.Fatalf("children: %v", children)
	}
	if ids, children, _ = hierarchyRooms(t, s, alice, root, "?max_depth=1"); !sameList(ids, []string{root, r1, ss1, r2}) || len(children[ss1]) != 2 {
		t.Fatalf("max_depth=1: %v %v", ids, children)
	}
	if ids, children, _ = hierarchyRooms(t, s, alice, root, "?suggested_only=true"); !sameList(ids, []string{root, r1, r2}) || !sameList(children[root], []string{r1, r2}) {
		t.Fatalf("suggested_only: %v %v", ids, children)
	}
	ids, _, next := hierarchyRooms(t, s, alice, root, "?limit=4")
	if !sameList(ids, []string{root, r1, ss1, r3}) || next == "" {
		t.Fatalf("first page: %v %q", ids, next)
	}
	if ids, _, next = hierarchyRooms(t, s, alice, root, "?from="+next); !sameList(ids, []string{restricted, r2}) || next != "" {
		t.Fatalf("second page: %v %q", ids, next)
	}
	expectErr(t, s.Do(t, "GET", v1("/rooms/%s/hierarchy", root)+"?from=4_1_0", alice.Token, nil), http.StatusBadRequest, "M_INVALID_PARAM")

	// Bob sees what he could join or peek into: not the private SS1, so
	// nothing below it; invited to SS1 he sees it, and R3 (invite-only, not
	// invited) stays out; the restricted room appears once he is in SS1.
	s.MustOK(t, "POST", hstest.Path("/join/%s", root), bob.Token, map[string]any{})
	if ids, _, _ = hierarchyRooms(t, s, bob, root, ""); !sameList(ids, []string{root, r1, r2}) {
		t.Fatalf("bob: %v", ids)
	}
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/invite", ss1), alice.Token, map[string]any{"user_id": bob.UserID})
	if ids, _, _ = hierarchyRooms(t, s, bob, root, ""); !sameList(ids, []string{root, r1, ss1, r2}) {
		t.Fatalf("bob invited to SS1: %v", ids)
	}
	s.MustOK(t, "POST", hstest.Path("/join/%s", ss1), bob.Token, map[string]any{})
	if ids, _, _ = hierarchyRooms(t, s, bob, root, ""); !sameList(ids, []string{root, r1, ss1, restricted, r2}) {
		t.Fatalf("bob in SS1: %v", ids)
	}
	expectErr(t, s.Do(t, "GET", v1("/rooms/%s/hierarchy", r3), bob.Token, nil), http.StatusForbidden, "M_FORBIDDEN")

	// Room summaries.
	r := s.MustOK(t, "GET", v1("/room_summary/%s", restricted), alice.Token, nil)
	if ids, _ := r.JSON["allowed_room_ids"].([]any); r.Str("join_rule") != "restricted" || len(ids) != 1 || ids[0] != ss1 || r.Str("membership") != "join" {
		t.Fatalf("restricted summary: %s", r.Body)
	}
	r = s.MustOK(t, "GET", v1("/room_summary/%s", r3), alice.Token, nil)
	if _, ok := r.JSON["allowed_room_ids"]; ok || r.Str("room_id") != r3 || r.Str("room_version") == "" {
		t.Fatalf("invite-only summary: %s", r.Body)
	}
	expectErr(t, s.Do(t, "GET", v1("/room_summary/%s", r3), bob.Token, nil), http.StatusNotFound, "M_NOT_FOUND")
	if r = s.MustOK(t, "GET", v1("/room_summary/%s", r1), "", nil); r.Str("name") != "R1" || r.Str("membership") != "" {
		t.Fatalf("anonymous summary: %s", r.Body)
	}
}
