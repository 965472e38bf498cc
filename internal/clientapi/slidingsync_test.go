package clientapi_test

import (
	"fmt"
	"slices"
	"strconv"
	"testing"

	"conclave/internal/homeserver/hstest"
)

const ssPath = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"

// ss posts a sliding sync request; pos "" starts a connection.
func ss(t testing.TB, s *hstest.Server, u *hstest.User, pos string, timeoutMS int, body map[string]any) *hstest.Response {
	t.Helper()
	path := ssPath + "?timeout=" + strconv.Itoa(timeoutMS)
	if pos != "" {
		path += "&pos=" + pos
	}
	return s.Do(t, "POST", path, u.Token, body)
}

func ssOK(t testing.TB, s *hstest.Server, u *hstest.User, pos string, timeoutMS int, body map[string]any) *hstest.Response {
	t.Helper()
	r := ss(t, s, u, pos, timeoutMS, body)
	if r.Status != 200 {
		t.Fatalf("sliding sync: %d %s", r.Status, r.Body)
	}
	if r.Str("pos") == "" {
		t.Fatalf("no pos: %s", r.Body)
	}
	return r
}

// elementXRequiredState is what matrix-rust-sdk's room list service asks of
// every room of all_rooms (crates/matrix-sdk-ui/src/room_list_service).
var elementXRequiredState = [][]string{
	{"m.room.name", ""}, {"m.room.encryption", ""}, {"m.room.member", "$LAZY"}, {"m.room.member", "$ME"},
	{"m.room.topic", ""}, {"m.room.avatar", ""}, {"m.room.canonical_alias", ""}, {"m.room.power_levels", ""},
	{"org.matrix.msc3401.call.member", "*"}, {"m.room.join_rules", ""}, {"m.room.tombstone", ""}, {"m.room.create", ""},
	{"m.room.history_visibility", ""}, {"io.element.functional_members", ""}, {"m.space.parent", "*"}, {"m.space.child", "*"},
	{"org.matrix.msc3672.beacon_info", "*"},
}

func roomListBody(ranges [][]int, subs map[string]any) map[string]any {
	body := map[string]any{
		"conn_id": "room-list",
		"lists": map[string]any{"all_rooms": map[string]any{
			"ranges": ranges, "timeline_limit": 1, "required_state": elementXRequiredState,
		}},
		"extensions": map[string]any{
			"account_data": map[string]any{"enabled": true},
			"receipts":     map[string]any{"enabled": true, "rooms": []string{"*"}, "lists": []string{"all_rooms"}},
			"typing":       map[string]any{"enabled": true, "rooms": []string{"*"}, "lists": []string{"all_rooms"}},
		},
	}
	if subs != nil {
		body["room_subscriptions"] = subs
	}
	return body
}

func encryptionBody() map[string]any {
	return map[string]any{"conn_id": "encryption", "extensions": map[string]any{
		"to_device": map[string]any{"enabled": true}, "e2ee": map[string]any{"enabled": true},
	}}
}

func listIDs(r *hstest.Response, list string) []string {
	var out []string
	ops, _ := dig(r.JSON, "lists", list, "ops").([]any)
	for _, op := range ops {
		ids, _ := dig(op, "room_ids").([]any)
		for _, id := range ids {
			out = append(out, id.(string))
		}
	}
	return out
}

func ssRoom(r *hstest.Response, id string) map[string]any {
	m, _ := dig(r.JSON, "rooms", id).(map[string]any)
	return m
}

func stateTypes(room map[string]any) []string {
	var out []string
	evs, _ := room["required_state"].([]any)
	for _, e := range evs {
		out = append(out, fmt.Sprint(dig(e, "type"), "|", dig(e, "state_key")))
	}
	slices.Sort(out)
	return out
}

// TestSlidingSyncElementX replays what Element X sends (two connections,
// all_rooms growing from a selective range, a room subscription with
// timeline_limit 20) against an account in several rooms, and checks the
// shape of every answer.
func TestSlidingSyncElementX(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")

	v := s.MustOK(t, "GET", "/_matrix/client/versions", "", nil)
	if dig(v.JSON, "unstable_features", "org.matrix.simplified_msc3575") != true {
		t.Fatalf("/versions does not advertise simplified sliding sync: %s", v.Body)
	}

	// Five rooms: named ones, an encrypted one, a DM, and an invite.
	var rooms []string
	for i := range 3 {
		id := createRoom(t, s, alice, map[string]any{"preset": "public_chat", "name": fmt.Sprintf("Room %d", i)})
		send(t, s, alice, id, fmt.Sprintf("m%d", i), fmt.Sprintf("hello %d", i))
		rooms = append(rooms, id)
	}
	enc := createRoom(t, s, alice, map[string]any{"preset": "private_chat", "name": "Secret",
		"initial_state": []any{map[string]any{"type": "m.room.encryption", "state_key": "", "content": map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}}}})
	dm := createRoom(t, s, bob, map[string]any{"preset": "trusted_private_chat", "is_direct": true, "invite": []string{alice.UserID}})
	s.MustOK(t, "POST", hstest.Path("/join/%s", dm), alice.Token, map[string]any{})
	s.MustOK(t, "PUT", hstest.Path("/user/%s/account_data/m.direct", alice.UserID), alice.Token, map[string]any{bob.UserID: []string{dm}})
	send(t, s, bob, dm, "d1", "psst")
	invite := createRoom(t, s, bob, map[string]any{"preset": "public_chat", "name": "Invitation", "invite": []string{alice.UserID}})
	// rooms[1] gets the latest message: it leads the list.
	send(t, s, alice, rooms[1], "latest", "newest")

	// room-list: a selective range first.
	r1 := ssOK(t, s, alice, "", 0, roomListBody([][]int{{0, 1}}, nil))
	if c := dig(r1.JSON, "lists", "all_rooms", "count"); c != 6.0 {
		t.Fatalf("count %v, want 6: %s", c, r1.Body)
	}
	first := listIDs(r1, "all_rooms")
	if len(first) != 2 || first[0] != rooms[1] || first[1] != invite {
		t.Fatalf("window [0,1] = %v, want %s then the invite", first, rooms[1])
	}
	if len(dig(r1.JSON, "rooms").(map[string]any)) != 2 {
		t.Fatalf("rooms outside the window sent: %s", r1.Body)
	}
	inv := ssRoom(r1, invite)
	if inv["initial"] != true || inv["invite_state"] == nil || inv["timeline"] != nil || inv["bump_stamp"] == nil || inv["name"] != "Invitation" {
		t.Fatalf("invite entry: %v", inv)
	}
	top := ssRoom(r1, rooms[1])
	tl, _ := top["timeline"].([]any)
	if top["initial"] != true || len(tl) != 1 || dig(tl[0], "content", "body") != "newest" || top["limited"] != true ||
		top["name"] != "Room 1" || top["joined_count"] != 1.0 || top["invited_count"] != 0.0 || top["num_live"] != 0.0 ||
		top["notification_count"] != 0.0 || top["highlight_count"] != 0.0 || top["prev_batch"] == nil || top["is_dm"] != nil {
		t.Fatalf("top room: %v", top)
	}
	// Required state: exactly what was asked ($ME: alice's member event;
	// $LAZY: the timeline's sender, alice too).
	want := []string{"m.room.create|", "m.room.history_visibility|", "m.room.join_rules|", "m.room.member|" + alice.UserID, "m.room.name|", "m.room.power_levels|"}
	if got := stateTypes(top); !slices.Equal(got, want) {
		t.Fatalf("required_state %v, want %v", got, want)
	}
	if gl, _ := dig(r1.JSON, "extensions", "account_data", "global").([]any); len(gl) < 2 {
		t.Fatalf("global account data (m.direct, m.push_rules): %s", r1.Body)
	}
	for _, ext := range []string{"receipts", "typing"} {
		if dig(r1.JSON, "extensions", ext, "rooms") == nil {
			t.Fatalf("extension %s missing: %s", ext, r1.Body)
		}
	}

	// The range grows: only the rooms new to the window are sent.
	r2 := ssOK(t, s, alice, r1.Str("pos"), 0, roomListBody([][]int{{0, 99}}, nil))
	all := listIDs(r2, "all_rooms")
	if len(all) != 6 || all[0] != rooms[1] || all[1] != invite || all[2] != dm || all[3] != enc || all[4] != rooms[2] || all[5] != rooms[0] {
		t.Fatalf("order %v", all)
	}
	got := dig(r2.JSON, "rooms").(map[string]any)
	if len(got) != 4 || got[invite] != nil || got[rooms[1]] != nil {
		t.Fatalf("grown window sent %d rooms: %s", len(got), r2.Body)
	}
	d := ssRoom(r2, dm)
	if d["is_dm"] != true || d["name"] != nil || len(d["heroes"].([]any)) != 1 || dig(d["heroes"].([]any)[0], "user_id") != bob.UserID || d["notification_count"] != 1.0 {
		t.Fatalf("DM entry: %v", d)
	}
	if e := ssRoom(r2, enc); !slices.Contains(stateTypes(e), "m.room.encryption|") {
		t.Fatalf("encrypted room without m.room.encryption: %v", e)
	}

	// Nothing new: a long-poll with no news answers with the same position
	// once its timeout is over.
	r3 := ssOK(t, s, alice, r2.Str("pos"), 50, roomListBody([][]int{{0, 99}}, nil))
	if r3.Str("pos") != r2.Str("pos") || len(dig(r3.JSON, "rooms").(map[string]any)) != 0 {
		t.Fatalf("no news: %s", r3.Body)
	}

	// Opening a room: a subscription with timeline_limit 20 and the pinned
	// events; its longer timeline comes flagged as expanded.
	for i := range 4 {
		send(t, s, alice, rooms[0], fmt.Sprintf("more%d", i), fmt.Sprintf("more %d", i))
	}
	subs := map[string]any{rooms[0]: map[string]any{"timeline_limit": 20, "required_state": append(slices.Clone(elementXRequiredState), []string{"m.room.pinned_events", ""})}}
	r4 := ssOK(t, s, alice, r2.Str("pos"), 0, roomListBody([][]int{{0, 99}}, subs))
	sub := ssRoom(r4, rooms[0])
	tl, _ = sub["timeline"].([]any)
	if len(tl) < 6 || sub["unstable_expanded_timeline"] != true || dig(tl[len(tl)-1], "content", "body") != "more 3" {
		t.Fatalf("subscribed room: %v", sub)
	}
	if listIDs(r4, "all_rooms")[0] != rooms[0] {
		t.Fatalf("the room with the newest message is not first: %v", listIDs(r4, "all_rooms"))
	}

	// A message from bob wakes a long-poll; only that room comes, with the
	// one new event live.
	pos := r4.Str("pos")
	done := make(chan *hstest.Response, 1)
	go func() { done <- ss(t, s, alice, pos, 20000, roomListBody([][]int{{0, 99}}, subs)) }()
	send(t, s, bob, dm, "d2", "wake up")
	r5 := <-done
	if r5.Status != 200 {
		t.Fatalf("long-poll: %d %s", r5.Status, r5.Body)
	}
	d = ssRoom(r5, dm)
	tl, _ = d["timeline"].([]any)
	if len(tl) != 1 || dig(tl[0], "content", "body") != "wake up" || d["initial"] != nil || d["num_live"] != 1.0 || d["limited"] != false {
		t.Fatalf("woken update: %s", r5.Body)
	}
	if len(dig(r5.JSON, "rooms").(map[string]any)) != 1 || listIDs(r5, "all_rooms")[0] != dm {
		t.Fatalf("woken update carries other rooms or the wrong order: %s", r5.Body)
	}

	// encryption: to_device and e2ee only.
	e1 := ssOK(t, s, alice, "", 0, encryptionBody())
	if dig(e1.JSON, "extensions", "to_device", "next_batch") == nil || dig(e1.JSON, "extensions", "e2ee", "device_one_time_keys_count") == nil ||
		dig(e1.JSON, "extensions", "e2ee", "device_unused_fallback_key_types") == nil || dig(e1.JSON, "lists") != nil {
		t.Fatalf("encryption connection: %s", e1.Body)
	}
	// The two connections are independent: room-list's position still works.
	ssOK(t, s, alice, r5.Str("pos"), 0, roomListBody([][]int{{0, 99}}, subs))
}

func TestSlidingSyncUnknownPos(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	r := ssOK(t, s, alice, "", 0, roomListBody([][]int{{0, 9}}, nil))
	for _, pos := range []string{"garbage", "1_999", "999_1", r.Str("pos") + "0"} {
		expectErr(t, ss(t, s, alice, pos, 0, roomListBody([][]int{{0, 9}}, nil)), 400, "M_UNKNOWN_POS")
	}
	// Another conn_id does not know room-list's position.
	expectErr(t, ss(t, s, alice, r.Str("pos"), 0, encryptionBody()), 400, "M_UNKNOWN_POS")
	// A new connection under the same conn_id: the old position is gone.
	r2 := ssOK(t, s, alice, "", 0, roomListBody([][]int{{0, 9}}, nil))
	expectErr(t, ss(t, s, alice, r.Str("pos"), 0, roomListBody([][]int{{0, 9}}, nil)), 400, "M_UNKNOWN_POS")
	ssOK(t, s, alice, r2.Str("pos"), 0, roomListBody([][]int{{0, 9}}, nil))
	// Bad requests.
	for _, body := range []map[string]any{
		{"lists": map[string]any{"a": map[string]any{"ranges": [][]int{{5, 1}}}}},
		{"lists": map[string]any{"a": map[string]any{"ranges": [][]int{{-1, 1}}}}},
		{"lists": map[string]any{"a": map[string]any{"timeline_limit": -1}}},
		{"lists": map[string]any{"a": map[string]any{"required_state": [][]string{{"m.room.name"}}}}},
		{"room_subscriptions": map[string]any{"not-a-room": map[string]any{}}},
	} {
		expectErr(t, ss(t, s, alice, "", 0, body), 400, "M_INVALID_PARAM")
	}
	expectErr(t, s.Do(t, "POST", ssPath, alice.Token, "[]"), 400, "M_BAD_JSON")
	expectErr(t, s.Do(t, "POST", ssPath, "", map[string]any{}), 401, "M_MISSING_TOKEN")
}
