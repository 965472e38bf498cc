package clientapi_test

// Each thing the server says it does, it does; what it does not do is
// refused with a clear error (issue 17, "Honesty").

import (
	"net/url"
	"testing"

	"conclave/internal/homeserver/hstest"
)

// Every room version /capabilities advertises can be created and upgraded
// to; none other is advertised.
func TestCapabilitiesAdvertiseOnlyCreatableVersions(t *testing.T) {
	s := hstest.Start(t)
	u := s.Register(t, "caps")
	r := s.MustOK(t, "GET", acV3+"/capabilities", u.Token, nil)
	avail, _ := dig(r.JSON, "capabilities", "m.room_versions", "available").(map[string]any)
	if len(avail) == 0 {
		t.Fatalf("no versions: %s", r.Body)
	}
	for v := range avail {
		res := s.Do(t, "POST", acV3+"/createRoom", u.Token, map[string]any{"room_version": v})
		if res.Status != 200 {
			t.Errorf("advertised room version %s: createRoom %d %s", v, res.Status, res.Body)
			continue
		}
		up := s.Do(t, "POST", hstest.Path("/rooms/%s/upgrade", res.Str("room_id")), u.Token, map[string]any{"new_version": v})
		if up.Status != 200 {
			t.Errorf("advertised room version %s: upgrade %d %s", v, up.Status, up.Body)
		}
	}
	for _, v := range []string{"1", "2"} {
		if _, ok := avail[v]; !ok {
			t.Errorf("room version %s (the historical event format, minted here) not advertised", v)
		}
	}
}

// A user who was only invited and rejected the invite was never a member:
// /members refuses them as /state does. One who was joined and left sees
// the members as they were when they left, on both.
func TestRejectedInviteSeesNoMembers(t *testing.T) {
	s := hstest.Start(t)
	alice, bob, carol := s.Register(t, "alice"), s.Register(t, "bob"), s.Register(t, "carol")
	roomID := createRoom(t, s, alice, map[string]any{"preset": "private_chat", "invite": []string{bob.UserID, carol.UserID}})
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/leave", roomID), bob.Token, map[string]any{}) // rejects the invite
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/join", roomID), carol.Token, map[string]any{})
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/leave", roomID), carol.Token, map[string]any{})
	for _, path := range []string{"/rooms/%s/state", "/rooms/%s/members", "/rooms/%s/state/m.room.create"} {
		expectErr(t, s.Do(t, "GET", hstest.Path(path, roomID), bob.Token, nil), 403, "M_FORBIDDEN")
	}
	for _, path := range []string{"/rooms/%s/state", "/rooms/%s/members"} {
		s.MustOK(t, "GET", hstest.Path(path, roomID), carol.Token, nil)
	}
	m := s.MustOK(t, "GET", hstest.Path("/rooms/%s/members", roomID), carol.Token, nil)
	if chunk, _ := m.JSON["chunk"].([]any); len(chunk) != 3 {
		t.Fatalf("members as carol left them: %s", m.Body)
	}
}

// A forgotten room is closed to every read path alike: /state, /state/{type}
// and /event/{eventId} answer as /messages does.
func TestForgottenRoomClosedEverywhere(t *testing.T) {
	s := hstest.Start(t)
	alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
	roomID := createRoom(t, s, alice, map[string]any{"preset": "public_chat"})
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/join", roomID), bob.Token, map[string]any{})
	eventID := s.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/t1", roomID), alice.Token, map[string]any{"msgtype": "m.text", "body": "seen by bob"}).Str("event_id")
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/leave", roomID), bob.Token, map[string]any{})
	// Before forgetting, all of them answer.
	paths := []string{"/rooms/%s/messages?dir=b", "/rooms/%s/state", "/rooms/%s/state/m.room.create", "/rooms/%s/members", "/rooms/%s/event/" + eventID, "/rooms/%s/context/" + eventID}
	for _, p := range paths {
		s.MustOK(t, "GET", hstest.Path(p, roomID), bob.Token, nil)
	}
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/forget", roomID), bob.Token, map[string]any{})
	want := s.Do(t, "GET", hstest.Path(paths[0], roomID), bob.Token, nil)
	expectErr(t, want, 403, "M_FORBIDDEN")
	for _, p := range paths[1:] {
		r := s.Do(t, "GET", hstest.Path(p, roomID), bob.Token, nil)
		if r.Status != want.Status || r.Errcode() != want.Errcode() || r.Str("error") != want.Str("error") {
			t.Errorf("%s after forgetting: %d %s, want as /messages: %s", p, r.Status, r.Body, want.Body)
		}
	}
}

// /messages and /context read their filter with the parser /sync uses: what
// a filter means (empty lists, rooms, inner wildcards) and which filters are
// refused are the same everywhere.
func TestMessagesAndContextFilters(t *testing.T) {
	s := hstest.Start(t)
	alice := s.Register(t, "alice")
	roomID := createRoom(t, s, alice, map[string]any{"preset": "private_chat"})
	first := s.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/m1", roomID), alice.Token, map[string]any{"msgtype": "m.text", "body": "one"}).Str("event_id")
	s.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/m2", roomID), alice.Token, map[string]any{"msgtype": "m.text", "body": "two"})
	messages := func(filter string) *hstest.Response {
		return s.Do(t, "GET", hstest.Path("/rooms/%s/messages", roomID)+"?dir=b&limit=50&filter="+url.QueryEscape(filter), alice.Token, nil)
	}
	count := func(r *hstest.Response, key string) int {
		t.Helper()
		if r.Status != 200 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		l, _ := r.JSON[key].([]any)
		return len(l)
	}
	all := count(messages(`{}`), "chunk") // every event here is m.room.*: 2 messages, 1 member
	for filter, want := range map[string]int{
		`{"types":[]}`:                                                       0, // an empty list matches nothing
		`{"senders":[]}`:                                                     0,
		`{"not_rooms":["` + roomID + `"]}`:                                   0,
		`{"rooms":["!elsewhere:localhost"]}`:                                 0,
		`{"rooms":["` + roomID + `"],"types":["m.room.message"]}`:            2,
		`{"types":["m.*.message"]}`:                                          2, // "*" inside a pattern
		`{"types":["m.room.*"],"not_types":["m.*.message","m.room.member"]}`: all - 3,
	} {
		if got := count(messages(filter), "chunk"); got != want {
			t.Errorf("/messages filter %s: %d events, want %d", filter, got, want)
		}
	}
	for _, c := range []struct{ filter, errcode string }{
		{`{"types":"m.room.message"}`, "M_BAD_JSON"},
		{`{"senders":["not a user id"]}`, "M_BAD_JSON"},
		{`{"limit":"ten"}`, "M_BAD_JSON"},
		{`{"limit":-1}`, "M_BAD_JSON"},
		{`{"rooms":[1]}`, "M_BAD_JSON"},
		{`[]`, "M_BAD_JSON"},
		{`{bad`, "M_NOT_JSON"},
	} {
		expectErr(t, messages(c.filter), 400, c.errcode)
		expectErr(t, s.Do(t, "GET", hstest.Path("/rooms/%s/context/%s", roomID, first)+"?filter="+url.QueryEscape(c.filter), alice.Token, nil), 400, c.errcode)
	}
	ctx := s.MustOK(t, "GET", hstest.Path("/rooms/%s/context/%s", roomID, first)+"?filter="+url.QueryEscape(`{"types":[]}`), alice.Token, nil)
	if count(ctx, "events_before")+count(ctx, "events_after") != 0 || ctx.JSON["event"] == nil {
		t.Fatalf("/context with types []: %s", ctx.Body)
	}
	ctx = s.MustOK(t, "GET", hstest.Path("/rooms/%s/context/%s", roomID, first)+"?filter="+url.QueryEscape(`{"types":["m.*.message"]}`), alice.Token, nil)
	if count(ctx, "events_after") != 1 || count(ctx, "events_before") != 0 {
		t.Fatalf("/context with an inner wildcard: %s", ctx.Body)
	}
}

// event_format "federation" is not implemented: a filter asking for it is
// refused where it is uploaded and where it is given inline to /sync,
// instead of being stored and answered with client-format events.
func TestFederationEventFormatRefused(t *testing.T) {
	s := hstest.Start(t)
	u := s.Register(t, "fed")
	filter := `{"event_format":"federation","room":{"timeline":{"limit":5}}}`
	expectErr(t, s.Do(t, "POST", hstest.Path("/user/%s/filter", u.UserID), u.Token, filter), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "GET", acV3+"/sync?timeout=0&filter="+url.QueryEscape(filter), u.Token, nil), 400, "M_INVALID_PARAM")
	// "client" is still accepted.
	s.MustOK(t, "POST", hstest.Path("/user/%s/filter", u.UserID), u.Token, `{"event_format":"client"}`)
}
