package clientapi_test

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"conclave/internal/homeserver/hstest"
)

func sendEvent(t *testing.T, s *hstest.Server, u *hstest.User, roomID, typ, txn string, content any) string {
	t.Helper()
	r := s.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/%s/%s", roomID, typ, txn), u.Token, content)
	return r.Str("event_id")
}

func putState(t *testing.T, s *hstest.Server, u *hstest.User, roomID, typ, key string, content any) {
	t.Helper()
	s.MustOK(t, "PUT", hstest.Path("/rooms/%s/state/%s/%s", roomID, typ, key), u.Token, content)
}

func v1Path(format string, args ...string) string {
	return strings.Replace(hstest.Path(format, args...), "/v3/", "/v1/", 1)
}

func chunkIDs(r *hstest.Response, key string) []string {
	var ids []string
	list, _ := r.JSON[key].([]any)
	for _, e := range list {
		if m, ok := e.(map[string]any); ok {
			if id, ok := m["event_id"].(string); ok {
				ids = append(ids, id)
			} else if id, ok := m["room_id"].(string); ok {
				ids = append(ids, id)
			}
		}
	}
	return ids
}

func equalIDs(got, want []string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

func TestAliases(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	roomID := createRoom(t, s, alice, map[string]any{"preset": "public_chat"})
	alias := "#cabinet:localhost"
	aliasPath := hstest.Path("/directory/room/%s", alias)

	s.MustOK(t, "PUT", aliasPath, alice.Token, map[string]string{"room_id": roomID})
	r := s.MustOK(t, "GET", aliasPath, "", nil)
	if r.Str("room_id") != roomID || !strings.Contains(string(r.Body), `"servers":["localhost"]`) {
		t.Fatalf("resolve: %s", r.Body)
	}
	expectErr(t, s.Do(t, "PUT", aliasPath, alice.Token, map[string]string{"room_id": roomID}), 409, "M_UNKNOWN")
	expectErr(t, s.Do(t, "PUT", hstest.Path("/directory/room/%s", "#x:elsewhere.example"), alice.Token, map[string]string{"room_id": roomID}), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "PUT", hstest.Path("/directory/room/%s", "nohash"), alice.Token, map[string]string{"room_id": roomID}), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "PUT", hstest.Path("/directory/room/%s", "#sp ace:localhost"), alice.Token, map[string]string{"room_id": roomID}), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "PUT", hstest.Path("/directory/room/%s", "#"+strings.Repeat("a", 260)+":localhost"), alice.Token, map[string]string{"room_id": roomID}), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "PUT", hstest.Path("/directory/room/%s", "#new:localhost"), alice.Token, map[string]string{}), 400, "M_MISSING_PARAM")
	expectErr(t, s.Do(t, "PUT", hstest.Path("/directory/room/%s", "#new:localhost"), alice.Token, "{nope"), 400, "M_NOT_JSON")
	expectErr(t, s.Do(t, "PUT", hstest.Path("/directory/room/%s", "#new:localhost"), alice.Token, `{"room_id": 4}`), 400, "M_BAD_JSON")
	expectErr(t, s.Do(t, "PUT", hstest.Path("/directory/room/%s", "#new:localhost"), "", map[string]string{"room_id": roomID}), 401, "M_MISSING_TOKEN")
	// Bob is not in the room; unknown rooms look the same.
	expectErr(t, s.Do(t, "PUT", hstest.Path("/directory/room/%s", "#bobs:localhost"), bob.Token, map[string]string{"room_id": roomID}), 403, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "PUT", hstest.Path("/directory/room/%s", "#ghost:localhost"), alice.Token, map[string]string{"room_id": "!ghost:localhost"}), 403, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "GET", hstest.Path("/directory/room/%s", "#unknown:localhost"), "", nil), 404, "M_NOT_FOUND")

	// The room's aliases: members only (the room is not world readable).
	r = s.MustOK(t, "GET", hstest.Path("/rooms/%s/aliases", roomID), alice.Token, nil)
	if !strings.Contains(string(r.Body), alias) {
		t.Fatalf("aliases: %s", r.Body)
	}
	expectErr(t, s.Do(t, "GET", hstest.Path("/rooms/%s/aliases", roomID), bob.Token, nil), 403, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "GET", hstest.Path("/rooms/%s/aliases", "!unknown:localhost"), bob.Token, nil), 403, "M_FORBIDDEN")

	// Once joined, Bob may add his own alias, delete it, but not Alice's.
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/join", roomID), bob.Token, "{}")
	s.MustOK(t, "GET", hstest.Path("/rooms/%s/aliases", roomID), bob.Token, nil)
	s.MustOK(t, "PUT", hstest.Path("/directory/room/%s", "#bobs:localhost"), bob.Token, map[string]string{"room_id": roomID})
	expectErr(t, s.Do(t, "DELETE", aliasPath, bob.Token, nil), 403, "M_FORBIDDEN")
	s.MustOK(t, "DELETE", hstest.Path("/directory/room/%s", "#bobs:localhost"), bob.Token, nil)
	// Alice (power 100) may delete anyone's alias.
	s.MustOK(t, "PUT", hstest.Path("/directory/room/%s", "#bobs2:localhost"), bob.Token, map[string]string{"room_id": roomID})
	s.MustOK(t, "DELETE", hstest.Path("/directory/room/%s", "#bobs2:localhost"), alice.Token, nil)
	s.MustOK(t, "DELETE", aliasPath, alice.Token, nil)
	expectErr(t, s.Do(t, "GET", aliasPath, "", nil), 404, "M_NOT_FOUND")
	expectErr(t, s.Do(t, "DELETE", aliasPath, alice.Token, nil), 404, "M_NOT_FOUND")

	// Deleting the canonical alias updates m.room.canonical_alias.
	lobby := createRoom(t, s, alice, map[string]any{"room_alias_name": "lobby"})
	putState(t, s, alice, lobby, "m.room.canonical_alias", "", map[string]any{"alias": "#lobby:localhost", "alt_aliases": []string{"#lobby:localhost"}})
	s.MustOK(t, "DELETE", hstest.Path("/directory/room/%s", "#lobby:localhost"), alice.Token, nil)
	r = s.MustOK(t, "GET", hstest.Path("/rooms/%s/state/m.room.canonical_alias/", lobby), alice.Token, nil)
	if strings.Contains(string(r.Body), "#lobby") {
		t.Fatalf("canonical alias kept the deleted alias: %s", r.Body)
	}
}

func TestRoomDirectory(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	garden := createRoom(t, s, alice, map[string]any{"visibility": "public", "name": "Gardening", "topic": "Tomatoes and more", "room_alias_name": "garden"})
	chess := createRoom(t, s, alice, map[string]any{"visibility": "public", "name": "Chess"})
	hidden := createRoom(t, s, alice, map[string]any{"preset": "public_chat", "name": "Hidden"})
	space := createRoom(t, s, alice, map[string]any{"visibility": "public", "name": "Space", "creation_content": map[string]any{"type": "m.space"}})
	s.MustOK(t, "POST", hstest.Path("/join/%s", chess), bob.Token, "{}")

	vis := func(roomID string) string {
		return s.MustOK(t, "GET", hstest.Path("/directory/list/room/%s", roomID), "", nil).Str("visibility")
	}
	if vis(garden) != "public" || vis(hidden) != "private" {
		t.Fatalf("visibility: %s %s", vis(garden), vis(hidden))
	}
	expectErr(t, s.Do(t, "GET", hstest.Path("/directory/list/room/%s", "!unknown:localhost"), "", nil), 404, "M_NOT_FOUND")
	expectErr(t, s.Do(t, "PUT", hstest.Path("/directory/list/room/%s", chess), bob.Token, map[string]string{"visibility": "private"}), 403, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "PUT", hstest.Path("/directory/list/room/%s", chess), alice.Token, map[string]string{"visibility": "secret"}), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "PUT", hstest.Path("/directory/list/room/%s", chess), alice.Token, `{"visibility": 1}`), 400, "M_BAD_JSON")
	expectErr(t, s.Do(t, "PUT", hstest.Path("/directory/list/room/%s", "!unknown:localhost"), alice.Token, map[string]string{"visibility": "public"}), 404, "M_NOT_FOUND")
	s.MustOK(t, "PUT", hstest.Path("/directory/list/room/%s", hidden), alice.Token, map[string]string{"visibility": "public"})
	if vis(hidden) != "public" {
		t.Fatal("publishing did not stick")
	}
	s.MustOK(t, "PUT", hstest.Path("/directory/list/room/%s", hidden), alice.Token, map[string]string{"visibility": "private"})

	// Most joined members first; no token needed for GET.
	r := s.MustOK(t, "GET", "/_matrix/client/v3/publicRooms", "", nil)
	ids := chunkIDs(r, "chunk")
	if len(ids) != 3 || ids[0] != chess {
		t.Fatalf("publicRooms: %s", r.Body)
	}
	if r.JSON["total_room_count_estimate"].(float64) != 3 {
		t.Fatalf("total: %s", r.Body)
	}
	var parsed struct {
		Chunk []map[string]any `json:"chunk"`
	}
	json.Unmarshal(r.Body, &parsed)
	for _, e := range parsed.Chunk {
		if e["room_id"] == garden {
			if e["name"] != "Gardening" || e["topic"] != "Tomatoes and more" || e["canonical_alias"] != "#garden:localhost" ||
				e["num_joined_members"].(float64) != 1 || e["world_readable"] != false || e["guest_can_join"] != false || e["join_rule"] != "public" {
				t.Fatalf("entry: %v", e)
			}
		}
		if e["room_id"] == space && e["room_type"] != "m.space" {
			t.Fatalf("room_type: %v", e)
		}
	}
	// Paging one at a time visits every room once.
	var seen []string
	since := ""
	for i := 0; i < 5; i++ {
		p := "/_matrix/client/v3/publicRooms?limit=1"
		if since != "" {
			p += "&since=" + url.QueryEscape(since)
		}
		r = s.MustOK(t, "GET", p, "", nil)
		seen = append(seen, chunkIDs(r, "chunk")...)
		if i > 0 && r.Str("prev_batch") == "" {
			t.Fatalf("no prev_batch: %s", r.Body)
		}
		if since = r.Str("next_batch"); since == "" {
			break
		}
	}
	if !equalIDs(seen, ids) {
		t.Fatalf("paged %v, want %v", seen, ids)
	}
	// Search and room types (POST needs a token).
	r = s.MustOK(t, "POST", "/_matrix/client/v3/publicRooms", alice.Token, map[string]any{"filter": map[string]any{"generic_search_term": "TOMATO"}})
	if ids := chunkIDs(r, "chunk"); len(ids) != 1 || ids[0] != garden {
		t.Fatalf("search: %s", r.Body)
	}
	r = s.MustOK(t, "POST", "/_matrix/client/v3/publicRooms", alice.Token, map[string]any{"filter": map[string]any{"generic_search_term": "#garden"}})
	if ids := chunkIDs(r, "chunk"); len(ids) != 1 || ids[0] != garden {
		t.Fatalf("alias search: %s", r.Body)
	}
	r = s.MustOK(t, "POST", "/_matrix/client/v3/publicRooms", alice.Token, map[string]any{"filter": map[string]any{"room_types": []any{"m.space"}}})
	if ids := chunkIDs(r, "chunk"); len(ids) != 1 || ids[0] != space {
		t.Fatalf("room_types space: %s", r.Body)
	}
	r = s.MustOK(t, "POST", "/_matrix/client/v3/publicRooms", alice.Token, map[string]any{"filter": map[string]any{"room_types": []any{nil}}})
	if ids := chunkIDs(r, "chunk"); len(ids) != 2 {
		t.Fatalf("room_types null: %s", r.Body)
	}
	expectErr(t, s.Do(t, "POST", "/_matrix/client/v3/publicRooms", "", "{}"), 401, "M_MISSING_TOKEN")
	expectErr(t, s.Do(t, "POST", "/_matrix/client/v3/publicRooms", alice.Token, `{"limit": "ten"}`), 400, "M_BAD_JSON")
	expectErr(t, s.Do(t, "GET", "/_matrix/client/v3/publicRooms?limit=x", "", nil), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "GET", "/_matrix/client/v3/publicRooms?since=garbage", "", nil), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "GET", "/_matrix/client/v3/publicRooms?server=other.example", "", nil), 404, "M_NOT_FOUND")
	s.MustOK(t, "GET", "/_matrix/client/v3/publicRooms?server=localhost", "", nil)
}

func relatesTo(relType, eventID string) map[string]any {
	return map[string]any{"rel_type": relType, "event_id": eventID}
}

func relationsOf(r *hstest.Response) map[string]any {
	u, _ := r.JSON["unsigned"].(map[string]any)
	rel, _ := u["m.relations"].(map[string]any)
	return rel
}

func TestRelationsAndThreads(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	carol := s.CreateUser(t, "carol")
	roomID := createRoom(t, s, alice, map[string]any{"preset": "public_chat"})
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/join", roomID), bob.Token, "{}")

	root := send(t, s, alice, roomID, "root", "What shall we plant?")
	reply1 := sendEvent(t, s, bob, roomID, "m.room.message", "r1", map[string]any{"msgtype": "m.text", "body": "Tomatoes", "m.relates_to": relatesTo("m.thread", root)})
	ref := sendEvent(t, s, alice, roomID, "m.room.message", "ref", map[string]any{"msgtype": "m.text", "body": "see above", "m.relates_to": relatesTo("m.reference", root)})
	edit := sendEvent(t, s, alice, roomID, "m.room.message", "e1", map[string]any{"msgtype": "m.text", "body": "* What shall we sow?",
		"m.new_content": map[string]any{"msgtype": "m.text", "body": "What shall we sow?"}, "m.relates_to": relatesTo("m.replace", root)})
	// An edit by someone else is not a valid replacement.
	bogus := sendEvent(t, s, bob, roomID, "m.room.message", "e2", map[string]any{"msgtype": "m.text", "body": "* hijack",
		"m.new_content": map[string]any{"msgtype": "m.text", "body": "hijack"}, "m.relates_to": relatesTo("m.replace", root)})
	reply2 := sendEvent(t, s, bob, roomID, "m.room.message", "r2", map[string]any{"msgtype": "m.text", "body": "Beans", "m.relates_to": relatesTo("m.thread", root)})

	// Bundled aggregations on /event.
	r := s.MustOK(t, "GET", hstest.Path("/rooms/%s/event/%s", roomID, root), alice.Token, nil)
	rel := relationsOf(r)
	thread, _ := rel["m.thread"].(map[string]any)
	if thread == nil || thread["count"].(float64) != 2 || thread["current_user_participated"] != true ||
		thread["latest_event"].(map[string]any)["event_id"] != reply2 {
		t.Fatalf("m.thread bundle: %s", r.Body)
	}
	if rep, _ := rel["m.replace"].(map[string]any); rep == nil || rep["event_id"] != edit {
		t.Fatalf("m.replace bundle: %s", r.Body)
	}
	if refs, _ := rel["m.reference"].(map[string]any); refs == nil || !strings.Contains(string(r.Body), `"chunk":[{"event_id":"`+ref+`"}]`) {
		t.Fatalf("m.reference bundle: %s", r.Body)
	}
	// Carol has not replied; the thread count is the same for her once joined.
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/join", roomID), carol.Token, "{}")
	r = s.MustOK(t, "GET", hstest.Path("/rooms/%s/event/%s", roomID, root), carol.Token, nil)
	if th := relationsOf(r)["m.thread"].(map[string]any); th["current_user_participated"] != false {
		t.Fatalf("carol participated: %s", r.Body)
	}
	// /messages and /context bundle too.
	r = s.MustOK(t, "GET", hstest.Path("/rooms/%s/messages?dir=b&limit=20", roomID), alice.Token, nil)
	if !strings.Contains(string(r.Body), `"m.relations":{"m.thread"`) {
		t.Fatalf("messages lack bundles: %s", r.Body)
	}
	r = s.MustOK(t, "GET", hstest.Path("/rooms/%s/context/%s", roomID, root), alice.Token, nil)
	if ev := r.JSON["event"].(map[string]any); ev["unsigned"].(map[string]any)["m.relations"] == nil {
		t.Fatalf("context lacks bundles: %s", r.Body)
	}

	// /sync bundles in timelines too.
	syncFilter := url.QueryEscape(`{"room":{"timeline":{"limit":50}}}`)
	r = s.MustOK(t, "GET", "/_matrix/client/v3/sync?filter="+syncFilter, alice.Token, nil)
	if !strings.Contains(string(r.Body), `"m.relations":{"m.thread"`) {
		t.Fatalf("sync lacks bundles: %s", truncate(r.Body))
	}

	// /relations: newest first by default, paginated.
	all := []string{reply2, bogus, edit, ref, reply1}
	r = s.MustOK(t, "GET", v1Path("/rooms/%s/relations/%s", roomID, root), alice.Token, nil)
	if !equalIDs(chunkIDs(r, "chunk"), all) {
		t.Fatalf("relations: %v want %v", chunkIDs(r, "chunk"), all)
	}
	var paged []string
	next := ""
	for i := 0; i < 10; i++ {
		p := v1Path("/rooms/%s/relations/%s", roomID, root) + "?limit=2"
		if next != "" {
			p += "&from=" + next
		}
		r = s.MustOK(t, "GET", p, alice.Token, nil)
		paged = append(paged, chunkIDs(r, "chunk")...)
		if next != "" && r.Str("prev_batch") != next {
			t.Fatalf("prev_batch: %s", r.Body)
		}
		if next = r.Str("next_batch"); next == "" {
			break
		}
	}
	if !equalIDs(paged, all) {
		t.Fatalf("paged relations: %v want %v", paged, all)
	}
	r = s.MustOK(t, "GET", v1Path("/rooms/%s/relations/%s", roomID, root)+"?dir=f&limit=3", alice.Token, nil)
	if !equalIDs(chunkIDs(r, "chunk"), []string{reply1, ref, edit}) || r.Str("next_batch") == "" {
		t.Fatalf("forwards: %s", r.Body)
	}
	r = s.MustOK(t, "GET", v1Path("/rooms/%s/relations/%s", roomID, root)+"?dir=f&from="+r.Str("next_batch"), alice.Token, nil)
	if !equalIDs(chunkIDs(r, "chunk"), []string{bogus, reply2}) {
		t.Fatalf("forwards page 2: %s", r.Body)
	}
	r = s.MustOK(t, "GET", v1Path("/rooms/%s/relations/%s/%s", roomID, root, "m.thread"), alice.Token, nil)
	if !equalIDs(chunkIDs(r, "chunk"), []string{reply2, reply1}) {
		t.Fatalf("m.thread relations: %s", r.Body)
	}
	r = s.MustOK(t, "GET", v1Path("/rooms/%s/relations/%s/%s/%s", roomID, root, "m.thread", "m.room.message"), alice.Token, nil)
	if len(chunkIDs(r, "chunk")) != 2 {
		t.Fatalf("typed relations: %s", r.Body)
	}
	r = s.MustOK(t, "GET", v1Path("/rooms/%s/relations/%s/%s/%s", roomID, root, "m.thread", "m.reaction"), alice.Token, nil)
	if len(chunkIDs(r, "chunk")) != 0 || r.JSON["recursion_depth"] != nil {
		t.Fatalf("other type: %s", r.Body)
	}
	r = s.MustOK(t, "GET", v1Path("/rooms/%s/relations/%s", roomID, root)+"?recurse=true", alice.Token, nil)
	if r.JSON["recursion_depth"] != float64(1) {
		t.Fatalf("recursion_depth: %s", r.Body)
	}
	// Errors.
	dave := s.CreateUser(t, "dave")
	expectErr(t, s.Do(t, "GET", v1Path("/rooms/%s/relations/%s", roomID, root), dave.Token, nil), 403, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "GET", v1Path("/rooms/%s/relations/%s", roomID, "$unknown"), alice.Token, nil), 404, "M_NOT_FOUND")
	expectErr(t, s.Do(t, "GET", v1Path("/rooms/%s/relations/%s", roomID, root)+"?dir=x", alice.Token, nil), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "GET", v1Path("/rooms/%s/relations/%s", roomID, root)+"?from=zz", alice.Token, nil), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "GET", v1Path("/rooms/%s/relations/%s", roomID, root)+"?limit=-1", alice.Token, nil), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "GET", v1Path("/rooms/%s/relations/%s", roomID, root)+"?recurse=maybe", alice.Token, nil), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "GET", v1Path("/rooms/%s/relations/%s", "bad", root), alice.Token, nil), 400, "M_INVALID_PARAM")

	// A redacted reply leaves the thread.
	s.MustOK(t, "PUT", hstest.Path("/rooms/%s/redact/%s/x1", roomID, reply2), bob.Token, "{}")
	r = s.MustOK(t, "GET", hstest.Path("/rooms/%s/event/%s", roomID, root), alice.Token, nil)
	if th := relationsOf(r)["m.thread"].(map[string]any); th["count"].(float64) != 1 || th["latest_event"].(map[string]any)["event_id"] != reply1 {
		t.Fatalf("after redaction: %s", r.Body)
	}

	// Threads: latest activity first; participated filters.
	root2 := send(t, s, alice, roomID, "root2", "Second topic")
	sendEvent(t, s, alice, roomID, "m.room.message", "r3", map[string]any{"msgtype": "m.text", "body": "self-reply", "m.relates_to": relatesTo("m.thread", root2)})
	r = s.MustOK(t, "GET", v1Path("/rooms/%s/threads", roomID), bob.Token, nil)
	if !equalIDs(chunkIDs(r, "chunk"), []string{root2, root}) {
		t.Fatalf("threads: %s", r.Body)
	}
	if !strings.Contains(string(r.Body), `"m.thread"`) {
		t.Fatalf("thread roots lack bundles: %s", r.Body)
	}
	r = s.MustOK(t, "GET", v1Path("/rooms/%s/threads", roomID)+"?include=participated", bob.Token, nil)
	if !equalIDs(chunkIDs(r, "chunk"), []string{root}) {
		t.Fatalf("participated (bob): %s", r.Body)
	}
	r = s.MustOK(t, "GET", v1Path("/rooms/%s/threads", roomID)+"?include=participated", carol.Token, nil)
	if len(chunkIDs(r, "chunk")) != 0 {
		t.Fatalf("participated (carol): %s", r.Body)
	}
	r = s.MustOK(t, "GET", v1Path("/rooms/%s/threads", roomID)+"?limit=1", bob.Token, nil)
	if !equalIDs(chunkIDs(r, "chunk"), []string{root2}) || r.Str("next_batch") == "" {
		t.Fatalf("threads page 1: %s", r.Body)
	}
	r = s.MustOK(t, "GET", v1Path("/rooms/%s/threads", roomID)+"?limit=1&from="+r.Str("next_batch"), bob.Token, nil)
	if !equalIDs(chunkIDs(r, "chunk"), []string{root}) {
		t.Fatalf("threads page 2: %s", r.Body)
	}
	expectErr(t, s.Do(t, "GET", v1Path("/rooms/%s/threads", roomID)+"?include=some", bob.Token, nil), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "GET", v1Path("/rooms/%s/threads", roomID)+"?from=nope", bob.Token, nil), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "GET", v1Path("/rooms/%s/threads", roomID), dave.Token, nil), 403, "M_FORBIDDEN")
}

// TestRelationsVisibility: with history_visibility "joined", a later joiner
// sees neither the earlier root nor its relations.
func TestRelationsVisibility(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	roomID := createRoom(t, s, alice, map[string]any{"preset": "public_chat"})
	putState(t, s, alice, roomID, "m.room.history_visibility", "", map[string]string{"history_visibility": "joined"})
	root := send(t, s, alice, roomID, "root", "before bob")
	early := sendEvent(t, s, alice, roomID, "m.room.message", "r1", map[string]any{"msgtype": "m.text", "body": "early", "m.relates_to": relatesTo("m.thread", root)})
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/join", roomID), bob.Token, "{}")
	late := sendEvent(t, s, alice, roomID, "m.room.message", "r2", map[string]any{"msgtype": "m.text", "body": "late", "m.relates_to": relatesTo("m.thread", root)})

	expectErr(t, s.Do(t, "GET", v1Path("/rooms/%s/relations/%s", roomID, root), bob.Token, nil), 404, "M_NOT_FOUND")
	expectErr(t, s.Do(t, "GET", hstest.Path("/rooms/%s/context/%s", roomID, root), bob.Token, nil), 404, "M_NOT_FOUND")
	expectErr(t, s.Do(t, "GET", hstest.Path("/rooms/%s/context/%s", roomID, early), bob.Token, nil), 404, "M_NOT_FOUND")
	r := s.MustOK(t, "GET", v1Path("/rooms/%s/threads", roomID), bob.Token, nil)
	if len(chunkIDs(r, "chunk")) != 0 {
		t.Fatalf("invisible thread root listed: %s", r.Body)
	}
	// The late reply is visible, and its context does not include the early events.
	r = s.MustOK(t, "GET", hstest.Path("/rooms/%s/context/%s", roomID, late), bob.Token, nil)
	for _, id := range append(chunkIDs(r, "events_before"), chunkIDs(r, "events_after")...) {
		if id == early || id == root {
			t.Fatalf("context leaks earlier events: %s", r.Body)
		}
	}
	// Alice sees everything.
	r = s.MustOK(t, "GET", v1Path("/rooms/%s/relations/%s", roomID, root), alice.Token, nil)
	if !equalIDs(chunkIDs(r, "chunk"), []string{late, early}) {
		t.Fatalf("alice relations: %s", r.Body)
	}
}

func TestEventContext(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	carol := s.CreateUser(t, "carol")
	roomID := createRoom(t, s, alice, map[string]any{"preset": "public_chat", "name": "Context"})
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/join", roomID), bob.Token, "{}")
	var ids []string
	for i, body := range []string{"m1", "m2", "m3", "m4", "m5", "m6", "m7"} {
		u := alice
		if i == 5 {
			u = bob
		}
		ids = append(ids, send(t, s, u, roomID, body, body))
	}
	r := s.MustOK(t, "GET", hstest.Path("/rooms/%s/context/%s", roomID, ids[3])+"?limit=4", alice.Token, nil)
	if r.JSON["event"].(map[string]any)["event_id"] != ids[3] ||
		!equalIDs(chunkIDs(r, "events_before"), []string{ids[2], ids[1]}) ||
		!equalIDs(chunkIDs(r, "events_after"), []string{ids[4], ids[5]}) {
		t.Fatalf("context: %s", r.Body)
	}
	state, _ := r.JSON["state"].([]any)
	if len(state) < 5 || !strings.Contains(string(r.Body), `"name":"Context"`) {
		t.Fatalf("state: %s", r.Body)
	}
	// start and end continue with /messages.
	m := s.MustOK(t, "GET", hstest.Path("/rooms/%s/messages?dir=b&limit=1&from=%s", roomID, r.Str("start")), alice.Token, nil)
	if !equalIDs(chunkIDs(m, "chunk"), []string{ids[0]}) {
		t.Fatalf("messages from start: %s", m.Body)
	}
	m = s.MustOK(t, "GET", hstest.Path("/rooms/%s/messages?dir=f&limit=5&from=%s", roomID, r.Str("end")), alice.Token, nil)
	if !equalIDs(chunkIDs(m, "chunk"), []string{ids[6]}) {
		t.Fatalf("messages from end: %s", m.Body)
	}
	// Lazy-loading members: only the senders' member events.
	filter := url.QueryEscape(`{"lazy_load_members": true}`)
	r = s.MustOK(t, "GET", hstest.Path("/rooms/%s/context/%s", roomID, ids[4])+"?limit=2&filter="+filter, alice.Token, nil)
	var members []string
	for _, e := range r.JSON["state"].([]any) {
		ev := e.(map[string]any)
		if ev["type"] != "m.room.member" {
			t.Fatalf("lazy state has %v", ev["type"])
		}
		members = append(members, ev["state_key"].(string))
	}
	if len(members) != 2 {
		t.Fatalf("lazy members: %v (%s)", members, r.Body)
	}
	// A types filter applies to the surrounding events.
	filter = url.QueryEscape(`{"types": ["m.room.member"]}`)
	r = s.MustOK(t, "GET", hstest.Path("/rooms/%s/context/%s", roomID, ids[0])+"?filter="+filter, alice.Token, nil)
	if len(chunkIDs(r, "events_after")) != 0 || len(chunkIDs(r, "events_before")) == 0 {
		t.Fatalf("filtered context: %s", r.Body)
	}
	r = s.MustOK(t, "GET", hstest.Path("/rooms/%s/context/%s", roomID, ids[0])+"?limit=0", alice.Token, nil)
	if len(chunkIDs(r, "events_after"))+len(chunkIDs(r, "events_before")) != 0 {
		t.Fatalf("limit 0: %s", r.Body)
	}
	// Errors.
	expectErr(t, s.Do(t, "GET", hstest.Path("/rooms/%s/context/%s", roomID, "$unknown"), alice.Token, nil), 404, "M_NOT_FOUND")
	expectErr(t, s.Do(t, "GET", hstest.Path("/rooms/%s/context/%s", roomID, ids[0]), carol.Token, nil), 403, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "GET", hstest.Path("/rooms/%s/context/%s", roomID, ids[0])+"?limit=many", alice.Token, nil), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "GET", hstest.Path("/rooms/%s/context/%s", roomID, ids[0])+"?filter=nope", alice.Token, nil), 400, "M_NOT_JSON")
	expectErr(t, s.Do(t, "GET", hstest.Path("/rooms/%s/context/%s", roomID, ids[0])+"?filter="+url.QueryEscape(`{"types":"x"}`), alice.Token, nil), 400, "M_BAD_JSON")
	// After leaving, later events are hidden.
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/leave", roomID), bob.Token, "{}")
	later := send(t, s, alice, roomID, "m8", "after bob left")
	expectErr(t, s.Do(t, "GET", hstest.Path("/rooms/%s/context/%s", roomID, later), bob.Token, nil), 404, "M_NOT_FOUND")
	r = s.MustOK(t, "GET", hstest.Path("/rooms/%s/context/%s", roomID, ids[6]), bob.Token, nil)
	if strings.Contains(string(r.Body), later) {
		t.Fatalf("left user sees later events: %s", r.Body)
	}
}

func stateContent(t *testing.T, s *hstest.Server, u *hstest.User, roomID, typ string) map[string]any {
	t.Helper()
	return s.MustOK(t, "GET", hstest.Path("/rooms/%s/state/%s/", roomID, typ), u.Token, nil).JSON
}

func TestRoomUpgrade(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	oldRoom := createRoom(t, s, alice, map[string]any{"visibility": "public", "name": "Club", "topic": "Members only", "room_alias_name": "club", "room_version": "10"})
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/join", oldRoom), bob.Token, "{}")
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/ban", oldRoom), alice.Token, map[string]string{"user_id": "@mallory:localhost"})
	last := send(t, s, alice, oldRoom, "bye", "moving")

	up := hstest.Path("/rooms/%s/upgrade", oldRoom)
	expectErr(t, s.Do(t, "POST", up, bob.Token, map[string]string{"new_version": "11"}), 403, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "POST", up, alice.Token, map[string]string{}), 400, "M_MISSING_PARAM")
	expectErr(t, s.Do(t, "POST", up, alice.Token, `{"new_version": 11}`), 400, "M_BAD_JSON")
	expectErr(t, s.Do(t, "POST", up, alice.Token, "{"), 400, "M_NOT_JSON")
	expectErr(t, s.Do(t, "POST", up, alice.Token, map[string]string{"new_version": "99"}), 400, "M_UNSUPPORTED_ROOM_VERSION")
	expectErr(t, s.Do(t, "POST", hstest.Path("/rooms/%s/upgrade", "!unknown:localhost"), alice.Token, map[string]string{"new_version": "11"}), 404, "M_NOT_FOUND")

	r := s.MustOK(t, "POST", up, alice.Token, map[string]string{"new_version": "11"})
	newRoom := r.Str("replacement_room")
	if newRoom == "" || newRoom == oldRoom {
		t.Fatalf("upgrade: %s", r.Body)
	}
	// The old room: tombstone, restricted power levels, no canonical alias.
	if ts := stateContent(t, s, alice, oldRoom, "m.room.tombstone"); ts["replacement_room"] != newRoom || ts["body"] == nil {
		t.Fatalf("tombstone: %v", ts)
	}
	pl := stateContent(t, s, alice, oldRoom, "m.room.power_levels")
	if pl["events_default"].(float64) < 50 || pl["invite"].(float64) < 50 {
		t.Fatalf("old power levels not restricted: %v", pl)
	}
	if ca := stateContent(t, s, alice, oldRoom, "m.room.canonical_alias"); len(ca) != 0 {
		t.Fatalf("old canonical alias: %v", ca)
	}
	// The new room: predecessor, copied state, bans, aliases and listing.
	create := stateContent(t, s, alice, newRoom, "m.room.create")
	pred, _ := create["predecessor"].(map[string]any)
	if create["room_version"] != "11" || pred["room_id"] != oldRoom || pred["event_id"] != last {
		t.Fatalf("create: %v (last event %s)", create, last)
	}
	if stateContent(t, s, alice, newRoom, "m.room.name")["name"] != "Club" || stateContent(t, s, alice, newRoom, "m.room.topic")["topic"] != "Members only" {
		t.Fatal("name/topic not copied")
	}
	if stateContent(t, s, alice, newRoom, "m.room.canonical_alias")["alias"] != "#club:localhost" {
		t.Fatal("canonical alias not moved")
	}
	npl := stateContent(t, s, alice, newRoom, "m.room.power_levels")
	if npl["users"].(map[string]any)[alice.UserID] != float64(100) || npl["events_default"] != float64(0) {
		t.Fatalf("new power levels: %v", npl)
	}
	r = s.MustOK(t, "GET", hstest.Path("/rooms/%s/state/m.room.member/%s", newRoom, "@mallory:localhost"), alice.Token, nil)
	if r.Str("membership") != "ban" {
		t.Fatalf("ban not copied: %s", r.Body)
	}
	if s.MustOK(t, "GET", hstest.Path("/directory/room/%s", "#club:localhost"), "", nil).Str("room_id") != newRoom {
		t.Fatal("alias still points at the old room")
	}
	if s.MustOK(t, "GET", hstest.Path("/directory/list/room/%s", oldRoom), "", nil).Str("visibility") != "private" ||
		s.MustOK(t, "GET", hstest.Path("/directory/list/room/%s", newRoom), "", nil).Str("visibility") != "public" {
		t.Fatal("directory listing not moved")
	}
	// Bob follows; he can no longer speak in the old room.
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/join", newRoom), bob.Token, "{}")
	// (Enforced by the authorisation rules: fails while authrules is a stub.)
	if r := s.Do(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/late", oldRoom), bob.Token, map[string]string{"body": "x"}); r.Status != 403 {
		t.Errorf("bob speaking in the old room: %d %s", r.Status, r.Body)
	}

	// Room version 12: creators are not listed in power levels; no predecessor event_id.
	r = s.MustOK(t, "POST", hstest.Path("/rooms/%s/upgrade", newRoom), alice.Token, map[string]string{"new_version": "12"})
	v12 := r.Str("replacement_room")
	create = stateContent(t, s, alice, v12, "m.room.create")
	if pred, _ := create["predecessor"].(map[string]any); pred["room_id"] != newRoom || pred["event_id"] != nil {
		t.Fatalf("v12 create: %v", create)
	}
	if users, _ := stateContent(t, s, alice, v12, "m.room.power_levels")["users"].(map[string]any); users[alice.UserID] != nil {
		t.Fatalf("v12 creator listed in power levels: %v", users)
	}
	if s.MustOK(t, "GET", hstest.Path("/directory/room/%s", "#club:localhost"), "", nil).Str("room_id") != v12 {
		t.Fatal("alias not moved twice")
	}
}

func TestTimestampToEvent(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	roomID := createRoom(t, s, alice, map[string]any{})
	last := send(t, s, alice, roomID, "m1", "hello")
	ev := s.MustOK(t, "GET", hstest.Path("/rooms/%s/event/%s", roomID, last), alice.Token, nil)
	ts := int64(ev.JSON["origin_server_ts"].(float64))
	p := v1Path("/rooms/%s/timestamp_to_event", roomID)
	r := s.MustOK(t, "GET", p+"?dir=b&ts=99999999999999", alice.Token, nil)
	if r.Str("event_id") != last || int64(r.JSON["origin_server_ts"].(float64)) != ts {
		t.Fatalf("backwards: %s", r.Body)
	}
	r = s.MustOK(t, "GET", p+"?dir=f&ts=0", alice.Token, nil)
	first := s.MustOK(t, "GET", hstest.Path("/rooms/%s/event/%s", roomID, r.Str("event_id")), alice.Token, nil)
	if first.Str("type") != "m.room.create" {
		t.Fatalf("forwards from 0: %s", first.Body)
	}
	expectErr(t, s.Do(t, "GET", p+"?dir=f&ts=99999999999999", alice.Token, nil), 404, "M_NOT_FOUND")
	expectErr(t, s.Do(t, "GET", p+"?dir=f", alice.Token, nil), 400, "M_MISSING_PARAM")
	expectErr(t, s.Do(t, "GET", p+"?ts=1", alice.Token, nil), 400, "M_MISSING_PARAM")
	expectErr(t, s.Do(t, "GET", p+"?dir=x&ts=1", alice.Token, nil), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "GET", p+"?dir=b&ts=soon", alice.Token, nil), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "GET", p+"?dir=b&ts=1", bob.Token, nil), 403, "M_FORBIDDEN")
}
