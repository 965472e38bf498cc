package clientapi_test

import (
	"context"
	"encoding/json"
	"testing"

	"conclave/internal/homeserver/hstest"
	"conclave/internal/receipts"
)

func TestTyping(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	carol := s.CreateUser(t, "carol")
	room := makeRoom(t, s, false, map[string]string{alice.UserID: "join", bob.UserID: "join", carol.UserID: "invite"})
	path := hstest.Path("/rooms/%s/typing/%s", room, alice.UserID)

	s.MustOK(t, "PUT", path, alice.Token, map[string]any{"typing": true, "timeout": 30000})
	s.MustOK(t, "PUT", hstest.Path("/rooms/%s/typing/%s", room, bob.UserID), bob.Token, map[string]any{"typing": true})
	got, serial := s.HS.Typing.Since([]string{room}, 0)
	if len(got[room]) != 2 || got[room][0] != alice.UserID {
		t.Fatalf("typing: %v", got)
	}
	s.MustOK(t, "PUT", path, alice.Token, map[string]any{"typing": false})
	got, _ = s.HS.Typing.Since([]string{room}, serial)
	if len(got[room]) != 1 || got[room][0] != bob.UserID {
		t.Fatalf("after stop: %v", got)
	}

	expectErr(t, s.Do(t, "PUT", path, bob.Token, map[string]any{"typing": true}), 403, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "PUT", hstest.Path("/rooms/%s/typing/%s", room, carol.UserID), carol.Token, map[string]any{"typing": true}), 403, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "PUT", hstest.Path("/rooms/%s/typing/%s", "!unknown:localhost", alice.UserID), alice.Token, map[string]any{"typing": true}), 403, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "PUT", hstest.Path("/rooms/%s/typing/%s", "bad", alice.UserID), alice.Token, map[string]any{"typing": true}), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "PUT", hstest.Path("/rooms/%s/typing/%s", room, "bad"), alice.Token, map[string]any{"typing": true}), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "PUT", path, alice.Token, map[string]any{}), 400, "M_MISSING_PARAM")
	expectErr(t, s.Do(t, "PUT", path, alice.Token, map[string]any{"typing": "yes"}), 400, "M_BAD_JSON")
	expectErr(t, s.Do(t, "PUT", path, alice.Token, map[string]any{"typing": true, "timeout": "1"}), 400, "M_BAD_JSON")
	expectErr(t, s.Do(t, "PUT", path, alice.Token, map[string]any{"typing": true, "timeout": -5}), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "PUT", path, alice.Token, `{`), 400, "M_NOT_JSON")
	expectErr(t, s.Do(t, "PUT", path, "", map[string]any{"typing": true}), 401, "M_MISSING_TOKEN")
	if users := s.HS.Typing.Typing(room); len(users) != 1 {
		t.Fatalf("failed requests changed typing: %v", users)
	}
}

func TestReceipts(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	carol := s.CreateUser(t, "carol")
	room := makeRoom(t, s, false, map[string]string{alice.UserID: "join", bob.UserID: "join", carol.UserID: "leave"})
	other := makeRoom(t, s, false, map[string]string{alice.UserID: "join"})
	e1 := addMessage(t, s, room, bob.UserID)
	e2 := addMessage(t, s, room, bob.UserID)
	eo := addMessage(t, s, other, alice.UserID)
	ctx := context.Background()
	rcpt := func(typ, ev string) string { return hstest.Path("/rooms/%s/receipt/%s/%s", room, typ, ev) }

	s.MustOK(t, "POST", rcpt("m.read", e2), alice.Token, map[string]any{})
	// An older receipt is accepted but does not move the receipt back.
	s.MustOK(t, "POST", rcpt("m.read", e1), alice.Token, nil)
	s.MustOK(t, "POST", rcpt("m.read.private", e1), bob.Token, map[string]any{"thread_id": "main"})
	s.MustOK(t, "POST", rcpt("m.read", e1), bob.Token, map[string]any{"thread_id": e1})

	rows, err := s.HS.Receipts.Since(ctx, []string{room}, 0)
	if err != nil {
		t.Fatal(err)
	}
	asAlice, _ := json.Marshal(receipts.ByRoom(rows, alice.UserID)[room])
	p1 := `"` + e1 + `":{"m.read":{"@bob:localhost":{"ts":TS,"thread_id":"` + e1 + `"}}}`
	p2 := `"` + e2 + `":{"m.read":{"@alice:localhost":{"ts":TS}}}`
	if e2 < e1 { // json.Marshal sorts keys
		p1, p2 = p2, p1
	}
	want := "{" + p1 + "," + p2 + "}"
	if normTS(string(asAlice)) != want {
		t.Fatalf("alice's view:\n%s\nwant\n%s", normTS(string(asAlice)), want)
	}
	asBob := receipts.ByRoom(rows, bob.UserID)[room]
	if _, ok := asBob[e1]["m.read.private"][bob.UserID]; !ok {
		t.Fatalf("bob does not see his private receipt: %v", asBob)
	}

	// m.fully_read through the receipt endpoint lands in room account data.
	s.MustOK(t, "POST", rcpt("m.fully_read", e2), alice.Token, map[string]any{})
	s.MustOK(t, "POST", rcpt("m.fully_read", e1), alice.Token, map[string]any{}) // backwards: ignored
	r := s.MustOK(t, "GET", hstest.Path("/user/%s/rooms/%s/account_data/m.fully_read", alice.UserID, room), alice.Token, nil)
	if r.Str("event_id") != e2 {
		t.Fatalf("fully read: %s", r.Body)
	}

	expectErr(t, s.Do(t, "POST", rcpt("m.bogus", e1), alice.Token, map[string]any{}), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "POST", rcpt("m.read", e1), alice.Token, map[string]any{"thread_id": "nope"}), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "POST", rcpt("m.read", e1), alice.Token, map[string]any{"thread_id": ""}), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "POST", rcpt("m.read", e1), alice.Token, map[string]any{"thread_id": 1}), 400, "M_BAD_JSON")
	expectErr(t, s.Do(t, "POST", rcpt("m.fully_read", e1), alice.Token, map[string]any{"thread_id": "main"}), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "POST", rcpt("m.read", "notanevent"), alice.Token, map[string]any{}), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "POST", rcpt("m.read", "$unknown"), alice.Token, map[string]any{}), 404, "M_NOT_FOUND")
	expectErr(t, s.Do(t, "POST", rcpt("m.read", eo), alice.Token, map[string]any{}), 404, "M_NOT_FOUND")
	expectErr(t, s.Do(t, "POST", rcpt("m.read", e1), carol.Token, map[string]any{}), 403, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "POST", hstest.Path("/rooms/%s/receipt/m.read/%s", "bad", e1), alice.Token, map[string]any{}), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "POST", rcpt("m.read", e1), alice.Token, `{"thread_id":`), 400, "M_NOT_JSON")
	expectErr(t, s.Do(t, "POST", rcpt("m.read", e1), "", map[string]any{}), 401, "M_MISSING_TOKEN")

	// Read markers.
	markers := hstest.Path("/rooms/%s/read_markers", room)
	s.MustOK(t, "POST", markers, bob.Token, map[string]any{"m.fully_read": e2, "m.read": e2, "m.read.private": e2})
	r = s.MustOK(t, "GET", hstest.Path("/user/%s/rooms/%s/account_data/m.fully_read", bob.UserID, room), bob.Token, nil)
	if r.Str("event_id") != e2 {
		t.Fatalf("bob fully read: %s", r.Body)
	}
	rows, _ = s.HS.Receipts.Since(ctx, []string{room}, 0)
	if c := receipts.ByRoom(rows, bob.UserID)[room]; c[e2]["m.read"][bob.UserID].TS == 0 || c[e2]["m.read.private"][bob.UserID].TS == 0 {
		t.Fatalf("read markers receipts: %v", c)
	}
	s.MustOK(t, "POST", markers, alice.Token, map[string]any{})
	expectErr(t, s.Do(t, "POST", markers, carol.Token, map[string]any{}), 403, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "POST", markers, carol.Token, map[string]any{"m.read": e1}), 403, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "POST", markers, alice.Token, map[string]any{"m.read": 5}), 400, "M_BAD_JSON")
	expectErr(t, s.Do(t, "POST", markers, alice.Token, map[string]any{"m.read": "x"}), 400, "M_INVALID_PARAM")
	// A bad second marker stores nothing of the first.
	e3 := addMessage(t, s, room, bob.UserID)
	expectErr(t, s.Do(t, "POST", markers, alice.Token, map[string]any{"m.fully_read": e3, "m.read": eo}), 404, "M_NOT_FOUND")
	r = s.MustOK(t, "GET", hstest.Path("/user/%s/rooms/%s/account_data/m.fully_read", alice.UserID, room), alice.Token, nil)
	if r.Str("event_id") != e2 {
		t.Fatalf("failed read_markers moved the marker: %s", r.Body)
	}
	expectErr(t, s.Do(t, "POST", hstest.Path("/rooms/%s/read_markers", "bad"), alice.Token, map[string]any{}), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "POST", markers, alice.Token, `[]`), 400, "M_BAD_JSON")
}

func normTS(s string) string {
	out := []byte{}
	for i := 0; i < len(s); i++ {
		if i+5 <= len(s) && s[i:i+5] == `"ts":` {
			out = append(out, `"ts":TS`...)
			i += 5
			for i < len(s) && s[i] >= '0' && s[i] <= '9' {
				i++
			}
			i--
			continue
		}
		out = append(out, s[i])
	}
	return string(out)
}

func TestPresence(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	carol := s.CreateUser(t, "carol")
	makeRoom(t, s, false, map[string]string{alice.UserID: "join", bob.UserID: "join"})
	path := hstest.Path("/presence/%s/status", alice.UserID)

	r := s.MustOK(t, "GET", path, alice.Token, nil)
	if r.Str("presence") != "offline" {
		t.Fatalf("initial: %s", r.Body)
	}
	s.MustOK(t, "PUT", path, alice.Token, map[string]any{"presence": "online", "status_msg": "busy"})
	r = s.MustOK(t, "GET", path, bob.Token, nil)
	if r.Str("presence") != "online" || r.Str("status_msg") != "busy" || r.JSON["currently_active"] != true {
		t.Fatalf("bob's view: %s", r.Body)
	}
	if _, ok := r.JSON["last_active_ago"].(float64); !ok {
		t.Fatalf("last_active_ago: %s", r.Body)
	}
	s.MustOK(t, "PUT", path, alice.Token, map[string]any{"presence": "unavailable"})
	if r = s.MustOK(t, "GET", path, alice.Token, nil); r.Str("presence") != "unavailable" || r.Str("status_msg") != "busy" {
		t.Fatalf("unavailable keeps status: %s", r.Body)
	}
	evs, _ := s.HS.Presence.Since([]string{alice.UserID, bob.UserID}, 0)
	if len(evs) != 1 || evs[0].Sender != alice.UserID || evs[0].Type != "m.presence" {
		t.Fatalf("since: %+v", evs)
	}

	expectErr(t, s.Do(t, "GET", path, carol.Token, nil), 403, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "GET", hstest.Path("/presence/%s/status", "@nobody:localhost"), alice.Token, nil), 403, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "GET", hstest.Path("/presence/%s/status", "bad"), alice.Token, nil), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "PUT", path, bob.Token, map[string]any{"presence": "online"}), 403, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "PUT", path, alice.Token, map[string]any{"presence": "away"}), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "PUT", path, alice.Token, map[string]any{}), 400, "M_MISSING_PARAM")
	expectErr(t, s.Do(t, "PUT", path, alice.Token, map[string]any{"presence": "online", "status_msg": 3}), 400, "M_BAD_JSON")
	expectErr(t, s.Do(t, "PUT", path, alice.Token, "x"), 400, "M_NOT_JSON")
	expectErr(t, s.Do(t, "GET", path, "", nil), 401, "M_MISSING_TOKEN")
	if r = s.MustOK(t, "GET", path, alice.Token, nil); r.Str("presence") != "unavailable" {
		t.Fatalf("failed requests changed presence: %s", r.Body)
	}
}
