package clientapi_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"testing"

	"conclave/internal/homeserver/hstest"
)

// unread reads a user's counts for a room from an initial /sync; with
// threads, the timeline filter asks for unread_thread_notifications and the
// per-thread counts are returned too.
func unread(t *testing.T, s *hstest.Server, u *hstest.User, roomID string, threads bool) (n, h int, perThread map[string][2]int) {
	t.Helper()
	f := `{"room":{"timeline":{"limit":1}}}`
	if threads {
		f = `{"room":{"timeline":{"limit":1,"unread_thread_notifications":true}}}`
	}
	r := s.MustOK(t, "GET", "/_matrix/client/v3/sync?filter="+url.QueryEscape(f), u.Token, nil)
	var body struct {
		Rooms struct {
			Join map[string]struct {
				Unread *struct {
					N int `json:"notification_count"`
					H int `json:"highlight_count"`
				} `json:"unread_notifications"`
				Threads map[string]struct {
					N int `json:"notification_count"`
					H int `json:"highlight_count"`
				} `json:"unread_thread_notifications"`
			} `json:"join"`
		} `json:"rooms"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatal(err)
	}
	jr, ok := body.Rooms.Join[roomID]
	if !ok || jr.Unread == nil {
		t.Fatalf("no unread_notifications for %s: %s", roomID, r.Body)
	}
	perThread = map[string][2]int{}
	for id, c := range jr.Threads {
		perThread[id] = [2]int{c.N, c.H}
	}
	return jr.Unread.N, jr.Unread.H, perThread
}

func pushSend(t *testing.T, s *hstest.Server, u *hstest.User, roomID, typ string, content any) string {
	t.Helper()
	pushTxn++
	r := s.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/%s/%s", roomID, typ, "n"+strconv.Itoa(pushTxn)), u.Token, content)
	return r.Str("event_id")
}

var pushTxn int

// TestPushRulesDriveUnreadCounts: every default rule and every condition
// kind, evaluated by the room writer for each recipient, decides the
// recipient's unread and highlight counts; keywords, muted rooms and
// senders, and the master switch; a read receipt clears the counts.
func TestPushRulesDriveUnreadCounts(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	carol := s.CreateUser(t, "carol")
	roomID := acRoom(t, s, alice, map[string]any{"preset": "public_chat"}, bob, carol)
	s.MustOK(t, "PUT", hstest.Path("/rooms/%s/state/m.room.member/%s", roomID, bob.UserID), bob.Token,
		map[string]any{"membership": "join", "displayname": "Bobby Tables"})
	rules := "/_matrix/client/v3/pushrules/global/"

	type step struct {
		name   string
		sender *hstest.User
		typ    string
		body   map[string]any
		setup  func()
		dn, dh int // expected increments of bob's counts
	}
	text := func(b string) map[string]any { return map[string]any{"msgtype": "m.text", "body": b} }
	with := func(m map[string]any, k string, v any) map[string]any { m[k] = v; return m }
	var lastEvent string
	steps := []step{
		{name: "plain message (.m.rule.message)", typ: "m.room.message", body: text("hello"), dn: 1},
		{name: "notice (.m.rule.suppress_notices)", typ: "m.room.message", body: map[string]any{"msgtype": "m.notice", "body": "bob"}},
		{name: "m.mentions (.m.rule.is_user_mention)", typ: "m.room.message", body: with(text("hi"), "m.mentions", map[string]any{"user_ids": []string{bob.UserID}}), dn: 1, dh: 1},
		{name: "display name (.m.rule.contains_display_name)", typ: "m.room.message", body: text("ask bobby tables!"), dn: 1, dh: 1},
		{name: "user name (.m.rule.contains_user_name)", typ: "m.room.message", body: text("Bob, look"), dn: 1, dh: 1},
		{name: "not a word boundary", typ: "m.room.message", body: text("bobsleigh"), dn: 1},
		{name: "edit (.m.rule.suppress_edits)", typ: "m.room.message", body: map[string]any{"msgtype": "m.text", "body": "* bob",
			"m.new_content": text("bob"), "m.relates_to": map[string]any{"rel_type": "m.replace", "event_id": "$x"}}},
		{name: "reaction (.m.rule.reaction)", typ: "m.reaction", body: map[string]any{"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": "$x", "key": "bob"}}},
		{name: "room mention with power (.m.rule.is_room_mention)", typ: "m.room.message", body: with(text("all"), "m.mentions", map[string]any{"room": true}), dn: 1, dh: 1},
		{name: "room mention without power", sender: carol, typ: "m.room.message", body: with(text("all"), "m.mentions", map[string]any{"room": true}), dn: 1},
		{name: "@room with power (.m.rule.roomnotif)", typ: "m.room.message", body: text("@room hi"), dn: 1, dh: 1},
		{name: "@room without power", sender: carol, typ: "m.room.message", body: text("@room hi"), dn: 1},
		{name: "encrypted (.m.rule.encrypted)", typ: "m.room.encrypted", body: map[string]any{"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "x", "session_id": "s", "sender_key": "k", "device_id": "D"}, dn: 1},
		{name: "call (.m.rule.call)", typ: "m.call.invite", body: map[string]any{"call_id": "c", "lifetime": 1000, "version": "1", "offer": map[string]any{"type": "offer", "sdp": "x"}}, dn: 1},
		{name: "poll start", typ: "org.matrix.msc3381.poll.start", body: map[string]any{"body": "poll"}, dn: 1},
		{name: "poll response", typ: "org.matrix.msc3381.poll.response", body: map[string]any{"body": "bob"}},
		{name: "other event types", typ: "org.example.custom", body: map[string]any{"body": "hello"}},
		{name: "own message", sender: bob, typ: "m.room.message", body: text("bob here")},
		{name: "keyword (content rule)", typ: "m.room.message", body: text("Pineapple pizza?"), dn: 1, dh: 1, setup: func() {
			s.MustOK(t, "PUT", rules+"content/pineapple", bob.Token, map[string]any{"pattern": "pineapple", "actions": []any{"notify", map[string]any{"set_tweak": "highlight"}}})
		}},
		{name: "event_property_is", typ: "m.room.message", body: with(text("quiet"), "org.example.level", 42), setup: func() {
			s.MustOK(t, "PUT", rules+"override/quiet", bob.Token, map[string]any{"actions": []any{},
				"conditions": []any{map[string]any{"kind": "event_property_is", "key": "content.org\\.example\\.level", "value": 42}}})
		}},
		{name: "event_property_contains", typ: "m.room.message", body: with(text("look"), "org.example.tags", []any{"x", "urgent"}), dn: 1, dh: 1, setup: func() {
			s.MustOK(t, "PUT", rules+"override/urgent", bob.Token, map[string]any{"actions": []any{"notify", map[string]any{"set_tweak": "highlight", "value": true}},
				"conditions": []any{map[string]any{"kind": "event_property_contains", "key": "content.org\\.example\\.tags", "value": "urgent"}}})
		}},
		{name: "room_member_count", typ: "org.example.ping", body: map[string]any{}, dn: 1, dh: 1, setup: func() {
			s.MustOK(t, "PUT", rules+"underride/big", bob.Token, map[string]any{"actions": []any{"notify", map[string]any{"set_tweak": "highlight"}},
				"conditions": []any{map[string]any{"kind": "room_member_count", "is": ">2"}, map[string]any{"kind": "event_match", "key": "type", "pattern": "org.example.ping"}}})
		}},
		{name: "room_member_count not met", typ: "org.example.pong", body: map[string]any{}, setup: func() {
			s.MustOK(t, "PUT", rules+"underride/small", bob.Token, map[string]any{"actions": []any{"notify"},
				"conditions": []any{map[string]any{"kind": "room_member_count", "is": "<3"}, map[string]any{"kind": "event_match", "key": "type", "pattern": "org.example.pong"}}})
		}},
		{name: "muted sender", sender: carol, typ: "m.room.message", body: text("anyone there?"), setup: func() {
			s.MustOK(t, "PUT", rules+"sender/"+url.PathEscape(carol.UserID), bob.Token, map[string]any{"actions": []any{}})
		}},
		{name: "muted room", typ: "m.room.message", body: text("anyone"), setup: func() {
			s.MustOK(t, "PUT", rules+"room/"+url.PathEscape(roomID), bob.Token, map[string]any{"actions": []any{}})
		}},
		{name: "muted room, mention still highlights", typ: "m.room.message", body: with(text("hi"), "m.mentions", map[string]any{"user_ids": []string{bob.UserID}}), dn: 1, dh: 1},
		{name: "master rule", typ: "m.room.message", body: with(text("bob"), "m.mentions", map[string]any{"user_ids": []string{bob.UserID}}), setup: func() {
			s.MustOK(t, "PUT", rules+"override/.m.rule.master/enabled", bob.Token, map[string]any{"enabled": true})
		}},
		{name: "ignored sender", sender: carol, typ: "m.room.message", body: text("bob!"), setup: func() {
			s.MustOK(t, "PUT", hstest.Path("/user/%s/account_data/m.ignored_user_list", bob.UserID), bob.Token,
				map[string]any{"ignored_users": map[string]any{carol.UserID: map[string]any{}}})
		}},
		{name: "master rule off again", typ: "m.room.message", body: text("bob"), dn: 1, dh: 1, setup: func() {
			s.MustOK(t, "PUT", rules+"override/.m.rule.master/enabled", bob.Token, map[string]any{"enabled": false})
			s.MustOK(t, "DELETE", rules+"room/"+url.PathEscape(roomID), bob.Token, nil)
		}},
	}
	n, h, _ := unread(t, s, bob, roomID, false)
	if n != 0 || h != 0 {
		t.Fatalf("counts before any message: %d/%d", n, h)
	}
	for _, st := range steps {
		if st.setup != nil {
			st.setup()
		}
		sender := st.sender
		if sender == nil {
			sender = alice
		}
		lastEvent = pushSend(t, s, sender, roomID, st.typ, st.body)
		n2, h2, _ := unread(t, s, bob, roomID, false)
		if n2-n != st.dn || h2-h != st.dh {
			t.Errorf("%s: counts went %d/%d → %d/%d, want +%d/+%d", st.name, n, h, n2, h2, st.dn, st.dh)
		}
		n, h = n2, h2
	}
	// Alice's own counts are untouched by her messages; carol's follow
	// her default rules.
	if an, _, _ := unread(t, s, alice, roomID, false); an != 5 { // carol's 4 messages + bob's
		t.Errorf("alice's count %d, want 5", an)
	}
	// A private read receipt on the last event clears bob's counts.
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/receipt/m.read.private/%s", roomID, lastEvent), bob.Token, map[string]any{})
	if n, h, _ := unread(t, s, bob, roomID, false); n != 0 || h != 0 {
		t.Fatalf("after the receipt: %d/%d", n, h)
	}
}

// TestThreadedUnreadCounts: thread replies count per thread with
// unread_thread_notifications and in the room's total without it; a
// threaded receipt clears its thread up to its event, an unthreaded one
// everything before it (Synapse's rules).
func TestThreadedUnreadCounts(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	roomID := acRoom(t, s, alice, map[string]any{"preset": "public_chat"}, bob)
	root := send(t, s, alice, roomID, "r1", "root")
	thread := func(body string, mention bool) string {
		c := map[string]any{"msgtype": "m.text", "body": body, "m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root}}
		if mention {
			c["m.mentions"] = map[string]any{"user_ids": []string{bob.UserID}}
		}
		return pushSend(t, s, alice, roomID, "m.room.message", c)
	}
	t1 := thread("one", false)
	thread("two", true)
	main2 := send(t, s, alice, roomID, "r2", "main again")
	check := func(what string, wantN, wantH int, wantMain [2]int, wantThread [2]int) {
		t.Helper()
		n, h, _ := unread(t, s, bob, roomID, false)
		if n != wantN || h != wantH {
			t.Errorf("%s: total %d/%d, want %d/%d", what, n, h, wantN, wantH)
		}
		mn, mh, threads := unread(t, s, bob, roomID, true)
		if [2]int{mn, mh} != wantMain || threads[root] != wantThread {
			t.Errorf("%s: main %d/%d threads %v, want main %v thread %v", what, mn, mh, threads, wantMain, wantThread)
		}
		if len(threads) > 1 || wantThread == [2]int{} && len(threads) != 0 {
			t.Errorf("%s: threads %v", what, threads)
		}
	}
	check("start", 4, 1, [2]int{2, 0}, [2]int{2, 1})
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/receipt/m.read/%s", roomID, t1), bob.Token, map[string]any{"thread_id": root})
	check("threaded receipt", 3, 1, [2]int{2, 0}, [2]int{1, 1})
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/receipt/m.read/%s", roomID, root), bob.Token, map[string]any{"thread_id": "main"})
	check("main receipt", 2, 1, [2]int{1, 0}, [2]int{1, 1})
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/receipt/m.read.private/%s", roomID, main2), bob.Token, map[string]any{})
	check("unthreaded private receipt", 0, 0, [2]int{0, 0}, [2]int{})
}

// TestNotificationsEndpoint: GET /notifications lists notifications newest
// first with their actions and read flags, pages with from/next_token, and
// only=highlight keeps highlights; invites notify the invitee.
func TestNotificationsEndpoint(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	dave := s.CreateUser(t, "dave")
	roomID := acRoom(t, s, alice, map[string]any{"preset": "public_chat"}, bob)
	var ids []string
	for i := 0; i < 5; i++ {
		body := fmt.Sprintf("message %d", i)
		if i%2 == 0 {
			body += " for bob"
		}
		ids = append(ids, send(t, s, alice, roomID, "m"+strconv.Itoa(i), body))
	}
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/receipt/m.read/%s", roomID, ids[1]), bob.Token, map[string]any{})
	type notif struct {
		Actions []any          `json:"actions"`
		Event   map[string]any `json:"event"`
		Read    bool           `json:"read"`
		RoomID  string         `json:"room_id"`
		TS      int64          `json:"ts"`
	}
	get := func(u *hstest.User, q string) ([]notif, string) {
		t.Helper()
		r := s.MustOK(t, "GET", "/_matrix/client/v3/notifications"+q, u.Token, nil)
		var body struct {
			Next string  `json:"next_token"`
			N    []notif `json:"notifications"`
		}
		if err := json.Unmarshal(r.Body, &body); err != nil || body.N == nil {
			t.Fatalf("notifications: %s", r.Body)
		}
		return body.N, body.Next
	}
	all, next := get(bob, "")
	if len(all) != 5 || next != "" {
		t.Fatalf("all: %d, next %q", len(all), next)
	}
	for i, n := range all {
		want := ids[4-i]
		if n.Event["event_id"] != want || n.RoomID != roomID || n.TS == 0 || n.Event["room_id"] != roomID || len(n.Actions) == 0 || n.Actions[0] != "notify" {
			t.Fatalf("notification %d: %+v, want %s", i, n, want)
		}
		if n.Read != (i >= 3) {
			t.Errorf("notification %d read = %v", i, n.Read)
		}
	}
	page, next := get(bob, "?limit=2")
	if len(page) != 2 || next == "" {
		t.Fatalf("page 1: %d %q", len(page), next)
	}
	page2, _ := get(bob, "?limit=2&from="+url.QueryEscape(next))
	if len(page2) != 2 || page2[0].Event["event_id"] != ids[2] {
		t.Fatalf("page 2: %+v", page2)
	}
	hl, _ := get(bob, "?only=highlight")
	if len(hl) != 3 || hl[0].Event["event_id"] != ids[4] {
		t.Fatalf("highlights: %+v", hl)
	}
	if r := s.Do(t, "GET", "/_matrix/client/v3/notifications?from=abc", bob.Token, nil); r.Status != 400 || r.Errcode() != "M_INVALID_PARAM" {
		t.Fatalf("bad from: %d %s", r.Status, r.Body)
	}
	if r := s.Do(t, "GET", "/_matrix/client/v3/notifications?limit=-1", bob.Token, nil); r.Status != 400 || r.Errcode() != "M_INVALID_PARAM" {
		t.Fatalf("bad limit: %d %s", r.Status, r.Body)
	}
	// An invite notifies the invitee (.m.rule.invite_for_me), with a sound.
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/invite", roomID), alice.Token, map[string]any{"user_id": dave.UserID})
	dn, _ := get(dave, "")
	if len(dn) != 1 || dn[0].Event["type"] != "m.room.member" || dn[0].Event["state_key"] != dave.UserID || len(dn[0].Actions) != 2 {
		t.Fatalf("invite notification: %+v", dn)
	}
	// A one-to-one room notifies with a sound (.m.rule.room_one_to_one).
	dm := acRoom(t, s, alice, map[string]any{"preset": "private_chat", "invite": []string{dave.UserID}}, dave)
	pushSend(t, s, alice, dm, "m.room.encrypted", map[string]any{"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "x", "session_id": "s", "sender_key": "k", "device_id": "D"})
	dn, _ = get(dave, "?limit=1")
	if len(dn) != 1 || dn[0].Event["type"] != "m.room.encrypted" || len(dn[0].Actions) != 2 {
		t.Fatalf("one-to-one encrypted notification: %+v", dn)
	}
}

// TestIncrementalUnreadCountsMatchStore: counts extended from memory by
// incremental syncs (the room service keeps recent events' notifications)
// agree with GET /notifications, which reads the store, while several
// senders write and the reader sends receipts now and then.
func TestIncrementalUnreadCountsMatchStore(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	carol := s.CreateUser(t, "carol")
	bob := s.CreateUser(t, "bob")
	roomID := acRoom(t, s, alice, map[string]any{"preset": "public_chat"}, carol, bob)
	storeCounts := func() (n, h int) {
		r := s.MustOK(t, "GET", "/_matrix/client/v3/notifications?limit=1000", bob.Token, nil)
		var body struct {
			N []struct {
				Actions []any `json:"actions"`
				Read    bool  `json:"read"`
				RoomID  string
			} `json:"notifications"`
		}
		json.Unmarshal(r.Body, &body)
		for _, x := range body.N {
			if x.Read {
				continue
			}
			n++
			for _, a := range x.Actions {
				if m, ok := a.(map[string]any); ok && m["set_tweak"] == "highlight" && m["value"] != false {
					h++
				}
			}
		}
		return n, h
	}
	done := make(chan struct{})
	for i, u := range []*hstest.User{alice, carol} {
		go func(i int, u *hstest.User) {
			defer func() { done <- struct{}{} }()
			for j := 0; j < 30; j++ {
				body := fmt.Sprintf("m%d-%d", i, j)
				if j%3 == 0 {
					body += " bob"
				}
				r := s.Do(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/%s", roomID, body), u.Token, map[string]any{"msgtype": "m.text", "body": body})
				if r.Status != 200 {
					t.Errorf("send: %d %s", r.Status, r.Body)
					return
				}
			}
		}(i, u)
	}
	since := s.MustOK(t, "GET", "/_matrix/client/v3/sync", bob.Token, nil).Str("next_batch")
	finished := 0
	for round := 0; finished < 2; round++ {
		select {
		case <-done:
			finished++
		default:
		}
		r := s.MustOK(t, "GET", "/_matrix/client/v3/sync?timeout=200&since="+url.QueryEscape(since), bob.Token, nil)
		since = r.Str("next_batch")
		var body struct {
			Rooms struct {
				Join map[string]struct {
					Timeline struct {
						Events []struct {
							EventID string `json:"event_id"`
						} `json:"events"`
					} `json:"timeline"`
					Unread *struct {
						N int `json:"notification_count"`
						H int `json:"highlight_count"`
					} `json:"unread_notifications"`
				} `json:"join"`
			} `json:"rooms"`
		}
		json.Unmarshal(r.Body, &body)
		jr, ok := body.Rooms.Join[roomID]
		if !ok || jr.Unread == nil {
			continue
		}
		// The store may hold more by now; never less, and equal once quiet.
		if n, h := storeCounts(); jr.Unread.N > n || jr.Unread.H > h {
			t.Fatalf("round %d: sync says %d/%d, the store %d/%d", round, jr.Unread.N, jr.Unread.H, n, h)
		}
		if round%4 == 3 && len(jr.Timeline.Events) > 0 {
			last := jr.Timeline.Events[len(jr.Timeline.Events)-1].EventID
			s.MustOK(t, "POST", hstest.Path("/rooms/%s/receipt/m.read/%s", roomID, last), bob.Token, map[string]any{})
		}
	}
	n, h, _ := unread(t, s, bob, roomID, false)
	if sn, sh := storeCounts(); n != sn || h != sh {
		t.Fatalf("at rest: sync says %d/%d, the store %d/%d", n, h, sn, sh)
	}
	// An incremental sync after one more message agrees too.
	r := s.MustOK(t, "GET", "/_matrix/client/v3/sync?since="+url.QueryEscape(since), bob.Token, nil)
	since = r.Str("next_batch")
	send(t, s, alice, roomID, "last", "last bob")
	r = s.MustOK(t, "GET", "/_matrix/client/v3/sync?timeout=5000&since="+url.QueryEscape(since), bob.Token, nil)
	var last struct {
		Rooms struct {
			Join map[string]struct {
				Unread struct {
					N int `json:"notification_count"`
					H int `json:"highlight_count"`
				} `json:"unread_notifications"`
			} `json:"join"`
		} `json:"rooms"`
	}
	json.Unmarshal(r.Body, &last)
	if sn, sh := storeCounts(); last.Rooms.Join[roomID].Unread.N != sn || last.Rooms.Join[roomID].Unread.H != sh || sn != n+1 {
		t.Fatalf("after one more: sync %+v, store %d/%d (before %d/%d)", last.Rooms.Join[roomID].Unread, sn, sh, n, h)
	}
}

// TestCommonNotificationsFollowMembership: an event's notifications stored
// once for the members who share an outcome (plus rows for those who do
// not) give each user exactly what a row per recipient gave: a muted room
// gives nothing, a keyword highlights for its owner only, a user who
// joined after an event never counts or lists it, a user who left keeps
// the notifications of when they were a member and gets none of the events
// while they were away. Checked after a restart, so that every count comes
// from the store.
func TestCommonNotificationsFollowMembership(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	carol := s.CreateUser(t, "carol")
	dave := s.CreateUser(t, "dave")
	erin := s.CreateUser(t, "erin")
	frank := s.CreateUser(t, "frank")
	gina := s.CreateUser(t, "gina")
	roomID := acRoom(t, s, alice, map[string]any{"preset": "public_chat"}, bob, carol, dave, erin, frank)
	rules := "/_matrix/client/v3/pushrules/global/"
	s.MustOK(t, "PUT", rules+"room/"+url.PathEscape(roomID), carol.Token, map[string]any{"actions": []any{}})
	s.MustOK(t, "PUT", rules+"content/pineapple", dave.Token, map[string]any{"pattern": "pineapple", "actions": []any{"notify", map[string]any{"set_tweak": "highlight"}}})

	m1 := send(t, s, alice, roomID, "c1", "hello")
	m2 := send(t, s, alice, roomID, "c2", "pineapple pizza")
	s.MustOK(t, "POST", hstest.Path("/join/%s", roomID), gina.Token, map[string]any{})
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/leave", roomID), bob.Token, map[string]any{})
	m3 := send(t, s, alice, roomID, "c3", "while he is away")
	s.MustOK(t, "POST", hstest.Path("/join/%s", roomID), bob.Token, map[string]any{})
	m4 := send(t, s, alice, roomID, "c4", "welcome back")
	s = s.Restart(t)

	list := func(u *hstest.User, q string) []string {
		t.Helper()
		r := s.MustOK(t, "GET", "/_matrix/client/v3/notifications"+q, u.Token, nil)
		var body struct {
			N []struct {
				Event struct {
					EventID string `json:"event_id"`
				} `json:"event"`
			} `json:"notifications"`
		}
		if err := json.Unmarshal(r.Body, &body); err != nil {
			t.Fatal(err)
		}
		ids := []string{}
		for _, n := range body.N {
			ids = append(ids, n.Event.EventID)
		}
		return ids
	}
	for _, c := range []struct {
		name string
		u    *hstest.User
		q    string
		want []string
		n, h int
	}{
		{"member throughout", erin, "", []string{m4, m3, m2, m1}, 4, 0},
		{"keyword owner", dave, "", []string{m4, m3, m2, m1}, 4, 1},
		{"keyword owner, highlights only", dave, "?only=highlight", []string{m2}, 4, 1},
		{"keyword owner, paged", dave, "?limit=2", []string{m4, m3}, 4, 1},
		{"muted room", carol, "", []string{}, 0, 0},
		{"joined after", gina, "", []string{m4, m3}, 2, 0},
		{"left and came back", bob, "", []string{m4, m2, m1}, 1, 0},
		{"sender", alice, "", []string{}, 0, 0},
	} {
		if got := list(c.u, c.q); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%s: notifications %v, want %v", c.name, got, c.want)
		}
		if n, h, _ := unread(t, s, c.u, roomID, false); n != c.n || h != c.h {
			t.Errorf("%s: counts %d/%d, want %d/%d", c.name, n, h, c.n, c.h)
		}
	}
	// A receipt on m3 leaves m4 for dave; a threaded one changes nothing
	// for the main timeline's events after it.
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/receipt/m.read/%s", roomID, m3), dave.Token, map[string]any{})
	if n, h, _ := unread(t, s, dave, roomID, false); n != 1 || h != 0 {
		t.Errorf("dave after the receipt: %d/%d, want 1/0", n, h)
	}
}
