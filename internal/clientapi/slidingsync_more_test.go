package clientapi_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"conclave/internal/homeserver/hstest"
)

func toDeviceEvents(r *hstest.Response) []any {
	evs, _ := dig(r.JSON, "extensions", "to_device", "events").([]any)
	return evs
}

func encryptionSince(since string) map[string]any {
	b := encryptionBody()
	if since != "" {
		b["extensions"].(map[string]any)["to_device"].(map[string]any)["since"] = since
	}
	return b
}

// TestSlidingSyncToDeviceExactlyOnce: to-device messages are delivered after
// the extension's since, kept until a later request acknowledges them by
// sending the next_batch that covered them (so a lost response loses
// nothing), then deleted (so nothing comes twice).
func TestSlidingSyncToDeviceExactlyOnce(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	room := createRoom(t, s, alice, map[string]any{"preset": "public_chat"})

	e1 := ssOK(t, s, alice, "", 0, encryptionSince(""))
	n0, _ := dig(e1.JSON, "extensions", "to_device", "next_batch").(string)
	if n0 == "" || len(toDeviceEvents(e1)) != 0 {
		t.Fatalf("first: %s", e1.Body)
	}
	toDevice := func(txn string, n int) {
		s.MustOK(t, "PUT", hstest.Path("/sendToDevice/%s/%s", "m.test", txn), bob.Token,
			map[string]any{"messages": map[string]any{alice.UserID: map[string]any{alice.DeviceID: map[string]any{"n": n}}}})
	}
	for i := range 3 {
		toDevice(fmt.Sprint("t", i), i)
	}
	e2 := ssOK(t, s, alice, e1.Str("pos"), 10000, encryptionSince(n0))
	n1, _ := dig(e2.JSON, "extensions", "to_device", "next_batch").(string)
	if evs := toDeviceEvents(e2); len(evs) != 3 || dig(evs[0], "content", "n") != 0.0 || dig(evs[2], "content", "n") != 2.0 || dig(evs[0], "sender") != bob.UserID {
		t.Fatalf("delivery: %s", e2.Body)
	}
	// The response was lost: the client asks again from n0 and gets them all.
	again := ssOK(t, s, alice, e1.Str("pos"), 0, encryptionSince(n0))
	if len(toDeviceEvents(again)) != 3 {
		t.Fatalf("a retry from the acknowledged since lost messages: %s", again.Body)
	}
	// The retry took a new position (e2's is gone with it) and the same
	// next_batch.
	if nb := dig(again.JSON, "extensions", "to_device", "next_batch"); nb != n1 {
		t.Fatalf("retry next_batch %v, want %s", nb, n1)
	}
	expectErr(t, ss(t, s, alice, e2.Str("pos"), 0, encryptionSince(n1)), 400, "M_UNKNOWN_POS")
	e2 = again
	// Acknowledged by n1: nothing more, and never again from n0.
	e3 := ssOK(t, s, alice, e2.Str("pos"), 0, encryptionSince(n1))
	if len(toDeviceEvents(e3)) != 0 {
		t.Fatalf("delivered twice: %s", e3.Body)
	}
	if r := ssOK(t, s, alice, e2.Str("pos"), 0, encryptionSince(n0)); len(toDeviceEvents(r)) != 0 {
		t.Fatalf("acknowledged messages came back: %s", r.Body)
	}
	// A long-poll is woken by a new message.
	done := make(chan *hstest.Response, 1)
	go func() { done <- ss(t, s, alice, e3.Str("pos"), 20000, encryptionSince(n1)) }()
	toDevice("t9", 9)
	e4 := <-done
	if evs := toDeviceEvents(e4); e4.Status != 200 || len(evs) != 1 || dig(evs[0], "content", "n") != 9.0 {
		t.Fatalf("woken: %s", e4.Body)
	}
	// e2ee: bob now shares a room with alice: his device list is news.
	s.MustOK(t, "POST", hstest.Path("/join/%s", room), bob.Token, map[string]any{})
	e5 := ssOK(t, s, alice, e4.Str("pos"), 10000, encryptionSince(dig(e4.JSON, "extensions", "to_device", "next_batch").(string)))
	changed, _ := dig(e5.JSON, "extensions", "e2ee", "device_lists", "changed").([]any)
	if !slices.Contains(changed, any(bob.UserID)) || dig(e5.JSON, "extensions", "e2ee", "device_lists", "left") == nil {
		t.Fatalf("device lists: %s", e5.Body)
	}
}

// TestSlidingSyncIncremental: after the first response, each room comes
// again only with what changed: new timeline events, changed required
// state, what a widened required_state adds; a retry from the previous
// position gets the same changes again; positions survive a restart.
func TestSlidingSyncIncremental(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	a := createRoom(t, s, alice, map[string]any{"preset": "public_chat", "name": "A"})
	b := createRoom(t, s, alice, map[string]any{"preset": "public_chat", "name": "B"})
	body := func(rs [][]string) map[string]any {
		return map[string]any{"conn_id": "c", "lists": map[string]any{"l": map[string]any{
			"ranges": [][]int{{0, 9}}, "timeline_limit": 5, "required_state": rs}}}
	}
	rs := [][]string{{"m.room.name", ""}, {"m.room.member", "$LAZY"}}
	r1 := ssOK(t, s, alice, "", 0, body(rs))
	if len(dig(r1.JSON, "rooms").(map[string]any)) != 2 {
		t.Fatalf("first: %s", r1.Body)
	}
	// bob joins a; alice renames it.
	s.MustOK(t, "POST", hstest.Path("/join/%s", a), bob.Token, map[string]any{})
	putState(t, s, alice, a, "m.room.name", "", map[string]any{"name": "A2"})
	r2 := ssOK(t, s, alice, r1.Str("pos"), 10000, body(rs))
	ra := ssRoom(r2, a)
	if ra == nil || ssRoom(r2, b) != nil {
		t.Fatalf("only a changed: %s", r2.Body)
	}
	tl, _ := ra["timeline"].([]any)
	if len(tl) != 2 || dig(tl[0], "type") != "m.room.member" || dig(tl[1], "content", "name") != "A2" || ra["initial"] != nil ||
		ra["name"] != "A2" || ra["joined_count"] != 2.0 || ra["num_live"] != 2.0 || ra["limited"] != false {
		t.Fatalf("update of a: %v", ra)
	}
	// $LAZY: bob's member event (new); alice's was sent with r1 and has not
	// changed, so it is not sent again.
	want := []string{"m.room.member|" + bob.UserID, "m.room.name|"}
	if got := stateTypes(ra); !slices.Equal(got, want) {
		t.Fatalf("changed required state %v, want %v", got, want)
	}
	// The client lost r2: a retry from r1's position gets the same again.
	retry := ssOK(t, s, alice, r1.Str("pos"), 0, body(rs))
	if ra := ssRoom(retry, a); ra == nil || len(ra["timeline"].([]any)) != 2 || ssRoom(retry, b) != nil {
		t.Fatalf("retry: %s", retry.Body)
	}
	// r2's position is gone now (the retry's is the latest), r1's is the
	// previous one.
	expectErr(t, ss(t, s, alice, r2.Str("pos"), 0, body(rs)), 400, "M_UNKNOWN_POS")
	// Widening required_state sends what it adds, and what changed (b's
	// topic; not the member event of the timeline's sender: the client has it).
	putState(t, s, alice, b, "m.room.topic", "", map[string]any{"topic": "tea"})
	rs2 := append(rs, []string{"m.room.topic", ""}, []string{"m.room.create", ""})
	r3 := ssOK(t, s, alice, retry.Str("pos"), 0, body(rs2))
	rb := ssRoom(r3, b)
	if got := stateTypes(rb); !slices.Equal(got, []string{"m.room.create|", "m.room.topic|"}) || len(rb["timeline"].([]any)) != 1 {
		t.Fatalf("b after widening: %v", rb)
	}
	if got := stateTypes(ssRoom(r3, a)); !slices.Equal(got, []string{"m.room.create|"}) {
		t.Fatalf("a after widening: %v", got)
	}
	// Positions survive a restart.
	s.Stop()
	s = hstest.StartConfig(t, s.Config)
	send(t, s, alice, b, "after", "after the restart")
	r4 := ssOK(t, s, alice, r3.Str("pos"), 10000, body(rs2))
	rb = ssRoom(r4, b)
	if tl, _ := rb["timeline"].([]any); len(tl) != 1 || dig(tl[0], "content", "body") != "after the restart" || ssRoom(r4, a) != nil || rb["initial"] != nil {
		t.Fatalf("after a restart: %s", r4.Body)
	}
	// Leaving a room: it comes once more with the leave, then drops out of
	// the list.
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/leave", a), alice.Token, map[string]any{})
	r5 := ssOK(t, s, alice, r4.Str("pos"), 10000, body(rs2))
	ra = ssRoom(r5, a)
	tl, _ = ra["timeline"].([]any)
	if len(tl) != 1 || dig(tl[0], "content", "membership") != "leave" {
		t.Fatalf("leave: %s", r5.Body)
	}
	send(t, s, bob, a, "gone", "alice cannot see this")
	r6 := ssOK(t, s, alice, r5.Str("pos"), 0, body(rs2))
	if dig(r6.JSON, "lists", "l", "count") != 1.0 || ssRoom(r6, a) != nil {
		t.Fatalf("after the leave: %s", r6.Body)
	}
}

// TestSlidingSyncFilters: is_dm, is_encrypted, is_invite, room_types and
// not_room_types select a list's rooms.
func TestSlidingSyncFilters(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	plain := createRoom(t, s, alice, map[string]any{"preset": "public_chat"})
	enc := createRoom(t, s, alice, map[string]any{"preset": "public_chat",
		"initial_state": []any{map[string]any{"type": "m.room.encryption", "state_key": "", "content": map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}}}})
	space := createRoom(t, s, alice, map[string]any{"preset": "public_chat", "creation_content": map[string]any{"type": "m.space"}})
	dm := createRoom(t, s, alice, map[string]any{"preset": "public_chat"})
	s.MustOK(t, "PUT", hstest.Path("/user/%s/account_data/m.direct", alice.UserID), alice.Token, map[string]any{bob.UserID: []string{dm}})
	inv := createRoom(t, s, bob, map[string]any{"preset": "public_chat", "invite": []string{alice.UserID}})
	putState(t, s, alice, space, "m.space.child", plain, map[string]any{"via": []string{"localhost"}})

	lists := map[string]any{}
	add := func(name string, filters map[string]any) {
		lists[name] = map[string]any{"ranges": [][]int{{0, 20}}, "timeline_limit": 0, "filters": filters}
	}
	add("dm", map[string]any{"is_dm": true})
	add("notdm", map[string]any{"is_dm": false})
	add("enc", map[string]any{"is_encrypted": true})
	add("inv", map[string]any{"is_invite": true})
	add("spaces", map[string]any{"room_types": []string{"m.space"}})
	add("nospaces", map[string]any{"not_room_types": []string{"m.space"}})
	add("untyped", map[string]any{"room_types": []any{nil}})
	add("inspace", map[string]any{"spaces": []string{space}})
	r := ssOK(t, s, alice, "", 0, map[string]any{"lists": lists})
	check := func(list string, want ...string) {
		t.Helper()
		got := listIDs(r, list)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) || dig(r.JSON, "lists", list, "count") != float64(len(want)) {
			t.Errorf("list %s: %v, want %v", list, got, want)
		}
	}
	check("dm", dm)
	check("notdm", plain, enc, space, inv)
	check("enc", enc)
	check("inv", inv)
	check("spaces", space)
	check("nospaces", plain, enc, dm, inv)
	check("untyped", plain, enc, dm, inv)
	check("inspace", plain)
}

// TestSlidingSyncConcurrentRequests: requests racing on one connection
// (starting it, or going on from one position, as a client does when it
// abandons a long-poll to change its ranges) all get an answer, never a 500,
// and the last position they leave works.
func TestSlidingSyncConcurrentRequests(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	createRoom(t, s, alice, map[string]any{"preset": "public_chat"})
	body := roomListBody([][]int{{0, 9}}, nil)
	run := func(pos string) []*hstest.Response {
		out := make([]*hstest.Response, 4)
		var wg sync.WaitGroup
		for i := range out {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out[i] = ss(t, s, alice, pos, 0, body)
			}()
		}
		wg.Wait()
		return out
	}
	// Concurrent starts all get an answer; the connection started last is
	// the one that stays.
	known := 0
	for _, r := range run("") {
		if r.Status != 200 {
			t.Fatalf("concurrent starts: %d %s", r.Status, r.Body)
		}
		if ss(t, s, alice, r.Str("pos"), 0, body).Status == 200 {
			known++
		}
	}
	if known == 0 {
		t.Fatal("no started connection survived")
	}
	var pos string
	pos = ssOK(t, s, alice, "", 0, body).Str("pos")
	for _, r := range run(pos) {
		if r.Status != 200 && r.Errcode() != "M_UNKNOWN_POS" {
			t.Fatalf("concurrent requests from one position: %d %s", r.Status, r.Body)
		}
	}
}

// TestSlidingSyncEphemeralAndRules: the receipts, typing and account_data
// extensions carry what changed in the connection's rooms; history
// visibility and ignored users shape timelines as in /sync.
func TestSlidingSyncEphemeralAndRules(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	carol := s.CreateUser(t, "carol")
	room := createRoom(t, s, bob, map[string]any{"preset": "public_chat", "initial_state": []any{
		map[string]any{"type": "m.room.history_visibility", "state_key": "", "content": map[string]any{"history_visibility": "joined"}}}})
	send(t, s, bob, room, "before", "before alice joined")
	s.MustOK(t, "POST", hstest.Path("/join/%s", room), alice.Token, map[string]any{})
	s.MustOK(t, "POST", hstest.Path("/join/%s", room), carol.Token, map[string]any{})
	s.MustOK(t, "PUT", hstest.Path("/user/%s/account_data/m.ignored_user_list", alice.UserID), alice.Token,
		map[string]any{"ignored_users": map[string]any{carol.UserID: map[string]any{}}})
	send(t, s, carol, room, "ignored", "from carol")
	body := roomListBody([][]int{{0, 9}}, nil)
	body["lists"].(map[string]any)["all_rooms"].(map[string]any)["timeline_limit"] = 10
	r1 := ssOK(t, s, alice, "", 0, body)
	for _, e := range ssRoom(r1, room)["timeline"].([]any) {
		if b := dig(e, "content", "body"); b == "before alice joined" || b == "from carol" {
			t.Fatalf("timeline shows %q: %s", b, r1.Body)
		}
	}
	// bob: a message, a read receipt on it, typing; alice: a room tag.
	ev := send(t, s, bob, room, "m1", "hello")
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/receipt/m.read/%s", room, ev), bob.Token, map[string]any{})
	s.MustOK(t, "PUT", hstest.Path("/rooms/%s/typing/%s", room, bob.UserID), bob.Token, map[string]any{"typing": true, "timeout": 30000})
	s.MustOK(t, "PUT", hstest.Path("/user/%s/rooms/%s/account_data/m.tag", alice.UserID, room), alice.Token, map[string]any{"tags": map[string]any{"u.work": map[string]any{"order": 0.5}}})
	r2 := ssOK(t, s, alice, r1.Str("pos"), 10000, body)
	if users, _ := dig(r2.JSON, "extensions", "typing", "rooms", room, "content", "user_ids").([]any); len(users) != 1 || users[0] != bob.UserID {
		t.Fatalf("typing: %s", r2.Body)
	}
	if dig(r2.JSON, "extensions", "receipts", "rooms", room, "content", ev, "m.read", bob.UserID) == nil ||
		dig(r2.JSON, "extensions", "receipts", "rooms", room, "type") != "m.receipt" {
		t.Fatalf("receipts: %s", r2.Body)
	}
	tags, _ := dig(r2.JSON, "extensions", "account_data", "rooms", room).([]any)
	if len(tags) != 1 || dig(tags[0], "type") != "m.tag" || dig(tags[0], "content", "tags", "u.work", "order") != 0.5 {
		t.Fatalf("room account data: %s", r2.Body)
	}
	if gl, _ := dig(r2.JSON, "extensions", "account_data", "global").([]any); len(gl) != 0 {
		t.Fatalf("global account data resent: %s", r2.Body)
	}
	// bob stops typing: the room's typing set, now empty, is news.
	s.MustOK(t, "PUT", hstest.Path("/rooms/%s/typing/%s", room, bob.UserID), bob.Token, map[string]any{"typing": false})
	r3 := ssOK(t, s, alice, r2.Str("pos"), 10000, body)
	if users, ok := dig(r3.JSON, "extensions", "typing", "rooms", room, "content", "user_ids").([]any); !ok || len(users) != 0 {
		t.Fatalf("typing stopped: %s", r3.Body)
	}
	// Extensions scoped to a list that does not exist cover no room.
	scoped := roomListBody([][]int{{0, 9}}, nil)
	scoped["extensions"].(map[string]any)["typing"] = map[string]any{"enabled": true, "lists": []string{"nope"}, "rooms": []string{}}
	s.MustOK(t, "PUT", hstest.Path("/rooms/%s/typing/%s", room, bob.UserID), bob.Token, map[string]any{"typing": true, "timeout": 30000})
	r4 := ssOK(t, s, alice, "", 0, scoped)
	if rooms, _ := dig(r4.JSON, "extensions", "typing", "rooms").(map[string]any); len(rooms) != 0 {
		t.Fatalf("typing outside the scope: %s", r4.Body)
	}
}

// TestSlidingSyncLazyMembers: $LAZY sends a sender's member event once per
// connection, again when it changed, and a new sender's when they speak.
func TestSlidingSyncLazyMembers(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	carol := s.CreateUser(t, "carol")
	room := createRoom(t, s, alice, map[string]any{"preset": "public_chat"})
	s.MustOK(t, "POST", hstest.Path("/join/%s", room), bob.Token, map[string]any{})
	s.MustOK(t, "POST", hstest.Path("/join/%s", room), carol.Token, map[string]any{})
	send(t, s, bob, room, "b1", "bob speaks")
	body := map[string]any{"conn_id": "c", "lists": map[string]any{"l": map[string]any{
		"ranges": [][]int{{0, 9}}, "timeline_limit": 1, "required_state": [][]string{{"m.room.member", "$LAZY"}}}}}
	r := ssOK(t, s, alice, "", 0, body)
	if got := stateTypes(ssRoom(r, room)); !slices.Equal(got, []string{"m.room.member|" + bob.UserID}) {
		t.Fatalf("initial: %v", got)
	}
	step := func(want ...string) {
		t.Helper()
		r = ssOK(t, s, alice, r.Str("pos"), 10000, body)
		got := stateTypes(ssRoom(r, room))
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("required_state %v, want %v", got, want)
		}
	}
	send(t, s, bob, room, "b2", "bob again")
	step() // the client has bob's member event
	send(t, s, carol, room, "c1", "carol speaks")
	step("m.room.member|" + carol.UserID)
	putState(t, s, bob, room, "m.room.member", bob.UserID, map[string]any{"membership": "join", "displayname": "Robert"})
	step("m.room.member|" + bob.UserID) // changed: in the timeline and the state
	send(t, s, bob, room, "b3", "as Robert")
	step()
}

// TestSlidingSyncManyRooms: a window of many rooms is built a few rooms at
// a time (slidingsync.roomWorkers); every room comes whole and once, with
// its own name, timeline and counts, first and after new messages.
func TestSlidingSyncManyRooms(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	const n = 24
	rooms := make([]string, n)
	for i := range rooms {
		rooms[i] = createRoom(t, s, alice, map[string]any{"preset": "public_chat", "name": fmt.Sprint("room ", i)})
		if i%2 == 0 {
			s.MustOK(t, "POST", hstest.Path("/join/%s", rooms[i]), bob.Token, map[string]any{})
		}
		send(t, s, alice, rooms[i], "m", fmt.Sprint("hello ", i))
	}
	body := map[string]any{"lists": map[string]any{"all": map[string]any{
		"ranges": [][]int{{0, n - 1}}, "timeline_limit": 2,
		"required_state": [][]string{{"m.room.name", ""}, {"m.room.member", "$LAZY"}}}}}
	r1 := ssOK(t, s, alice, "", 0, body)
	if got := listIDs(r1, "all"); len(got) != n || got[0] != rooms[n-1] || got[n-1] != rooms[0] {
		t.Fatalf("window %v", got)
	}
	for i, id := range rooms {
		r := ssRoom(r1, id)
		tl, _ := r["timeline"].([]any)
		want := 1.0
		if i%2 == 0 {
			want = 2
		}
		if r == nil || r["name"] != fmt.Sprint("room ", i) || r["initial"] != true || len(tl) != 2 ||
			dig(tl[1], "content", "body") != fmt.Sprint("hello ", i) || r["joined_count"] != want {
			t.Fatalf("room %d: %v", i, r)
		}
		wantState := []string{"m.room.member|" + alice.UserID, "m.room.name|"}
		if i%2 == 0 { // bob's join is in the timeline: his member event too ($LAZY)
			wantState = []string{"m.room.member|" + alice.UserID, "m.room.member|" + bob.UserID, "m.room.name|"}
		}
		if got := stateTypes(r); !slices.Equal(got, wantState) {
			t.Fatalf("room %d state %v", i, got)
		}
	}
	// Messages in some of the rooms: those rooms, and only them, again.
	changed := map[string]bool{}
	for i := 0; i < n; i += 6 {
		send(t, s, bob, rooms[i], fmt.Sprint("b", i), fmt.Sprint("bob ", i))
		changed[rooms[i]] = true
	}
	r2 := ssOK(t, s, alice, r1.Str("pos"), 10000, body)
	got, _ := dig(r2.JSON, "rooms").(map[string]any)
	if len(got) != len(changed) {
		t.Fatalf("changed rooms: %d, want %d: %s", len(got), len(changed), r2.Body)
	}
	for id := range changed {
		r := ssRoom(r2, id)
		tl, _ := r["timeline"].([]any)
		// bob's member event was sent with r1: not again.
		if r == nil || r["initial"] != nil || len(tl) != 1 || dig(tl[0], "sender") != bob.UserID || len(stateTypes(r)) != 0 {
			t.Fatalf("update of %s: %v", id, r)
		}
	}
}

// TestSlidingSyncStampsAfterRestart: an account's bump stamps are saved
// after an expensive build and, after a restart, brought forward from the
// save over what changed since (a message in the oldest room, a room joined
// after the save) instead of computed again: the order is the same as it
// would be computed.
func TestSlidingSyncStampsAfterRestart(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	const n = 70 // more than slidingsync's saveStampsAfter
	rooms := make([]string, n)
	for i := range rooms {
		rooms[i] = createRoom(t, s, alice, map[string]any{"preset": "public_chat", "name": fmt.Sprint("room ", i)})
	}
	body := roomListBody([][]int{{0, 2}}, nil)
	r1 := ssOK(t, s, alice, "", 0, body)
	if got := listIDs(r1, "all_rooms"); !slices.Equal(got, []string{rooms[n-1], rooms[n-2], rooms[n-3]}) {
		t.Fatalf("first window %v", got)
	}
	ctx := context.Background()
	waitFor(t, func() bool { _, _, err := s.HS.Store.SlidingStamps(ctx, alice.UserID); return err == nil })
	savedAt, _, _ := s.HS.Store.SlidingStamps(ctx, alice.UserID)
	// After the save: a message in the oldest room, and a new room joined.
	send(t, s, alice, rooms[0], "late", "the oldest room speaks")
	joined := createRoom(t, s, bob, map[string]any{"preset": "public_chat"})
	s.MustOK(t, "POST", hstest.Path("/join/%s", joined), alice.Token, map[string]any{})
	s.Stop()
	s = hstest.StartConfig(t, s.Config)
	r2 := ssOK(t, s, alice, "", 0, body)
	if got := listIDs(r2, "all_rooms"); !slices.Equal(got, []string{joined, rooms[0], rooms[n-1]}) || dig(r2.JSON, "lists", "all_rooms", "count") != float64(n+1) {
		t.Fatalf("window after the restart %v: %s", got, r2.Body)
	}
	// The stamps came from the save: it is where it was (the build after
	// the restart looked up only the two changed rooms, too few to save).
	if at, _, err := s.HS.Store.SlidingStamps(ctx, alice.UserID); err != nil || at != savedAt {
		t.Fatalf("saved stamps at %d (%v), want %d", at, err, savedAt)
	}
}
