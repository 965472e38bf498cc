package clientapi_test

import (
	"fmt"
	"net/url"
	"testing"
	"time"

	"conclave/internal/homeserver/hstest"
)

// Consecutive incremental syncs of one device take the fast paths of
// syncer/changes.go and room/positions.go (queries skipped when nothing of a
// kind changed, unread counts extended from the timeline): every change
// must still arrive, exactly once, and counts must stay right.
func TestSyncFastPathsMissNothing(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	roomID := s.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	s.MustOK(t, "POST", hstest.Path("/join/%s", roomID), bob.Token, map[string]any{})
	n := 0
	send := func(body string) string {
		n++
		return s.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/%s", roomID, fmt.Sprintf("fp%d", n)), alice.Token, map[string]any{"msgtype": "m.text", "body": body}).Str("event_id")
	}
	since := s.MustOK(t, "GET", "/_matrix/client/v3/sync", bob.Token, nil).Str("next_batch")
	sync := func() map[string]any {
		r := s.MustOK(t, "GET", "/_matrix/client/v3/sync?timeout=0&since="+url.QueryEscape(since), bob.Token, nil)
		since = r.Str("next_batch")
		return r.JSON
	}
	room := func(js map[string]any) map[string]any {
		rooms, _ := js["rooms"].(map[string]any)
		join, _ := rooms["join"].(map[string]any)
		r, _ := join[roomID].(map[string]any)
		return r
	}
	unread := func(js map[string]any) (float64, float64) {
		u, _ := room(js)["unread_notifications"].(map[string]any)
		return u["notification_count"].(float64), u["highlight_count"].(float64)
	}
	sync()
	sync() // the device now has a memo: the next syncs may skip

	// Unread counts grow across incremental syncs, highlights included.
	send("one")
	send("two")
	if c, h := unread(sync()); c != 2 || h != 0 {
		t.Fatalf("unread after two messages: %v/%v", c, h)
	}
	send("hey " + bob.UserID)
	if c, h := unread(sync()); c != 3 || h != 1 {
		t.Fatalf("unread after a mention: %v/%v", c, h)
	}
	// Bob's own message does not count.
	s.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/b1", roomID), bob.Token, map[string]any{"msgtype": "m.text", "body": "mine"})
	if c, _ := unread(sync()); c != 3 {
		t.Fatalf("unread after own message: %v", c)
	}
	// A read receipt resets the count, and arrives in the ephemeral events.
	last := send("four")
	sync()
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/receipt/m.read/%s", roomID, last), bob.Token, map[string]any{})
	js := sync()
	if c, h := unread(js); c != 0 || h != 0 {
		t.Fatalf("unread after receipt: %v/%v", c, h)
	}
	send("five")
	if c, _ := unread(sync()); c != 1 {
		t.Fatalf("unread after receipt and one message: %v", c)
	}
	// Alice's receipt reaches bob.
	sync()
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/receipt/m.read/%s", roomID, last), alice.Token, map[string]any{})
	eph, _ := room(sync())["ephemeral"].(map[string]any)
	if evs, _ := eph["events"].([]any); len(evs) == 0 {
		t.Fatal("alice's receipt not in bob's sync")
	}
	// Account data from bob's other request arrives.
	sync()
	s.MustOK(t, "PUT", hstest.Path("/user/%s/account_data/org.example.fast", bob.UserID), bob.Token, map[string]any{"n": 1})
	ad, _ := sync()["account_data"].(map[string]any)
	if evs, _ := ad["events"].([]any); len(evs) != 1 {
		t.Fatalf("account data: %v", ad)
	}
	// To-device messages arrive exactly once, and are acknowledged.
	sync()
	for i := range 2 {
		s.MustOK(t, "PUT", hstest.Path("/sendToDevice/org.example.td/%s", fmt.Sprintf("td%d", i)), alice.Token, map[string]any{
			"messages": map[string]any{bob.UserID: map[string]any{bob.DeviceID: map[string]any{"i": i}}}})
	}
	td, _ := sync()["to_device"].(map[string]any)
	if evs, _ := td["events"].([]any); len(evs) != 2 {
		t.Fatalf("to-device: %v", td)
	}
	for range 3 {
		td, _ := sync()["to_device"].(map[string]any)
		if evs, _ := td["events"].([]any); len(evs) != 0 {
			t.Fatalf("to-device delivered again: %v", td)
		}
	}
	// Memberships: an invite to, a join of and a leave of another room
	// between consecutive syncs all show up.
	sync()
	other := s.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"invite": []string{bob.UserID}}).Str("room_id")
	rooms, _ := sync()["rooms"].(map[string]any)
	if inv, _ := rooms["invite"].(map[string]any); inv[other] == nil {
		t.Fatalf("invite missing: %v", rooms)
	}
	s.MustOK(t, "POST", hstest.Path("/join/%s", other), bob.Token, map[string]any{})
	rooms, _ = sync()["rooms"].(map[string]any)
	if j, _ := rooms["join"].(map[string]any); j[other] == nil {
		t.Fatalf("join missing: %v", rooms)
	}
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/leave", other), bob.Token, map[string]any{})
	rooms, _ = sync()["rooms"].(map[string]any)
	if l, _ := rooms["leave"].(map[string]any); l[other] == nil {
		t.Fatalf("leave missing: %v", rooms)
	}
	// One-time key counts follow uploads and claims.
	otk := func() float64 {
		c, _ := sync()["device_one_time_keys_count"].(map[string]any)
		n, _ := c["signed_curve25519"].(float64)
		return n
	}
	otk()
	s.MustOK(t, "POST", "/_matrix/client/v3/keys/upload", bob.Token, map[string]any{"one_time_keys": map[string]any{
		"curve25519:AAAAAQ": "dGhpcyBpcyBub3QgYSByZWFsIGtleSBidXQgZmluZQ", "curve25519:AAAAAg": "YW5vdGhlciBub3QgcmVhbCBrZXkgZm9yIHRoZSB0ZXN0"}})
	if n := otk(); n != 0 {
		t.Fatalf("signed_curve25519 count %v after uploading unsigned keys", n)
	}
	c, _ := sync()["device_one_time_keys_count"].(map[string]any)
	if c["curve25519"] != float64(2) {
		t.Fatalf("curve25519 count after upload: %v", c)
	}
	s.MustOK(t, "POST", "/_matrix/client/v3/keys/claim", alice.Token, map[string]any{"one_time_keys": map[string]any{bob.UserID: map[string]any{bob.DeviceID: "curve25519"}}})
	c, _ = sync()["device_one_time_keys_count"].(map[string]any)
	if c["curve25519"] != float64(1) {
		t.Fatalf("curve25519 count after a claim: %v", c)
	}
	// A room-mate's device change reaches device_lists.changed.
	sync()
	s.MustOK(t, "PUT", hstest.Path("/devices/%s", alice.DeviceID), alice.Token, map[string]any{"display_name": "renamed"})
	dl, _ := sync()["device_lists"].(map[string]any)
	if ch, _ := dl["changed"].([]any); len(ch) != 1 || ch[0] != alice.UserID {
		t.Fatalf("device_lists after alice renamed a device: %v", dl)
	}
	if dl, _ := sync()["device_lists"].(map[string]any); dl != nil {
		if ch, _ := dl["changed"].([]any); len(ch) != 0 {
			t.Fatalf("device_lists again: %v", dl)
		}
	}
	// Long-polls take the same paths: a long-poll that first finds nothing
	// and is then woken must still see what woke it.
	for i, change := range []func(){
		func() {
			s.MustOK(t, "PUT", hstest.Path("/sendToDevice/org.example.td/%s", "lpx"), alice.Token, map[string]any{
				"messages": map[string]any{bob.UserID: map[string]any{bob.DeviceID: map[string]any{"lp": true}}}})
		},
		func() {
			s.MustOK(t, "PUT", hstest.Path("/user/%s/account_data/org.example.lp", bob.UserID), bob.Token, map[string]any{"lp": true})
		},
		func() {
			s.MustOK(t, "POST", hstest.Path("/rooms/%s/receipt/m.read/%s", roomID, last), alice.Token, map[string]any{"thread_id": "main"})
		},
	} {
		sync()
		done := make(chan map[string]any, 1)
		go func() {
			r := s.Do(t, "GET", "/_matrix/client/v3/sync?timeout=20000&since="+url.QueryEscape(since), bob.Token, nil)
			done <- r.JSON
		}()
		time.Sleep(150 * time.Millisecond) // let the long-poll find nothing first
		change()
		js := <-done
		since, _ = js["next_batch"].(string)
		delete(js, "next_batch")
		empty := true
		for _, k := range []string{"to_device", "account_data"} {
			if m, _ := js[k].(map[string]any); m != nil {
				if evs, _ := m["events"].([]any); len(evs) > 0 {
					empty = false
				}
			}
		}
		if r := room(js); r != nil {
			empty = false
		}
		if empty {
			t.Fatalf("long-poll %d returned without the change: %v", i, js)
		}
	}
	// Ignoring alice (account data) hides her later messages.
	s.MustOK(t, "PUT", hstest.Path("/user/%s/account_data/m.ignored_user_list", bob.UserID), bob.Token, map[string]any{"ignored_users": map[string]any{alice.UserID: map[string]any{}}})
	sync()
	send("ignored")
	tl, _ := room(sync())["timeline"].(map[string]any)
	if evs, _ := tl["events"].([]any); len(evs) != 0 {
		t.Fatalf("ignored user's message delivered: %v", fmt.Sprint(evs))
	}
}

// Unread counts stay right when a room's messages arrived while the device
// synced with a filter that left the room out: the next sync that shows the
// room counts them too (the cached count is only extended across syncs in
// which the room was really quiet).
func TestUnreadCountsAcrossFilteredSyncs(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	var rooms [2]string
	for i := range rooms {
		rooms[i] = s.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
		s.MustOK(t, "POST", hstest.Path("/join/%s", rooms[i]), bob.Token, map[string]any{})
	}
	n := 0
	send := func(r int) {
		n++
		s.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/%s", rooms[r], fmt.Sprintf("u%d", n)), alice.Token, map[string]any{"msgtype": "m.text", "body": "hi"})
	}
	since := s.MustOK(t, "GET", "/_matrix/client/v3/sync", bob.Token, nil).Str("next_batch")
	sync := func(filter string) map[string]any {
		q := "/_matrix/client/v3/sync?timeout=0&since=" + url.QueryEscape(since)
		if filter != "" {
			q += "&filter=" + url.QueryEscape(filter)
		}
		r := s.MustOK(t, "GET", q, bob.Token, nil)
		since = r.Str("next_batch")
		return r.JSON
	}
	count := func(js map[string]any, r int) float64 {
		rs, _ := js["rooms"].(map[string]any)
		join, _ := rs["join"].(map[string]any)
		room, _ := join[rooms[r]].(map[string]any)
		u, _ := room["unread_notifications"].(map[string]any)
		c, _ := u["notification_count"].(float64)
		return c
	}
	sync("")
	send(0)
	if c := count(sync(""), 0); c != 1 {
		t.Fatalf("room 0 after one message: %v", c)
	}
	onlyRoom1 := fmt.Sprintf(`{"room":{"rooms":[%q]}}`, rooms[1])
	send(0)
	send(0)
	send(1)
	sync(onlyRoom1)
	send(1)
	sync("")
	send(0)
	if c := count(sync(""), 0); c != 4 {
		t.Fatalf("room 0 after four messages, two of them during a filtered sync: %v", c)
	}
}
