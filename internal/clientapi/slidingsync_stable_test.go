package clientapi_test

import (
	"slices"
	"testing"

	"conclave/internal/homeserver/hstest"
)

// The stable encoding of simplified sliding sync (MSC4186 as accepted):
// POST /_matrix/client/v4/sync, written from the MSC's API section.
const ssStablePath = "/_matrix/client/v4/sync"

func ssStable(t *testing.T, s *hstest.Server, u *hstest.User, body any) *hstest.Response {
	t.Helper()
	return s.Do(t, "POST", ssStablePath, u.Token, body)
}

func ssStableOK(t *testing.T, s *hstest.Server, u *hstest.User, body map[string]any) *hstest.Response {
	t.Helper()
	r := ssStable(t, s, u, body)
	if r.Status != 200 || r.Str("pos") == "" {
		t.Fatalf("v4 sync: %d %s", r.Status, r.Body)
	}
	return r
}

// TestSlidingSyncStable: the stable shapes over the same engine — range,
// required_state include / exclude / lazy_members with literal strings,
// is_invited, pos and timeout in the body, and a room's membership, lists,
// timeline_events, stripped_state and expanded_timeline.
func TestSlidingSyncStable(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	old := createRoom(t, s, alice, map[string]any{"preset": "public_chat", "name": "old", "topic": "tea"})
	unnamed := createRoom(t, s, alice, map[string]any{"preset": "public_chat"})
	s.MustOK(t, "POST", hstest.Path("/join/%s", unnamed), bob.Token, map[string]any{})
	send(t, s, bob, unnamed, "b1", "bob was here")
	invite := createRoom(t, s, bob, map[string]any{"preset": "private_chat", "name": "bob's", "invite": []string{alice.UserID}})

	body := func(pos string, timeout int, limit int) map[string]any {
		b := map[string]any{
			"conn_id": "v4",
			"lists": map[string]any{
				// The most recent room, with every state but the create
				// event, lazy members, and no literal wildcard.
				"top": map[string]any{
					"range":          []int{0, 0},
					"timeline_limit": limit,
					"required_state": map[string]any{
						"include":      []any{map[string]any{}},
						"exclude":      []any{map[string]any{"type": "m.room.create", "state_key": ""}, map[string]any{"type": "m.room.member"}},
						"lazy_members": true,
					},
				},
				// Every room: its name event and its "$ME" member, a
				// literal state key here (nobody's).
				"all": map[string]any{
					"timeline_limit": 1,
					"required_state": map[string]any{"include": []any{
						map[string]any{"type": "m.room.name", "state_key": ""},
						map[string]any{"type": "m.room.member", "state_key": "$ME"},
					}},
					"filters": map[string]any{"is_invited": false},
				},
				"invites": map[string]any{
					"timeline_limit": 1,
					"required_state": map[string]any{},
					"filters":        map[string]any{"is_invited": true},
				},
			},
		}
		if pos != "" {
			b["pos"] = pos
			b["timeout"] = timeout
		}
		return b
	}
	r1 := ssStableOK(t, s, alice, body("", 0, 1))
	// Lists answer their count only.
	if dig(r1.JSON, "lists", "all", "count") != 2.0 || dig(r1.JSON, "lists", "invites", "count") != 1.0 || dig(r1.JSON, "lists", "top", "count") != 3.0 {
		t.Fatalf("counts: %s", r1.Body)
	}
	if dig(r1.JSON, "lists", "all", "ops") != nil {
		t.Fatalf("ops in the stable encoding: %s", r1.Body)
	}
	// The invite is the most recent: "top" holds it, "invites" too.
	ri := ssRoom(r1, invite)
	if ri == nil || ri["membership"] != "invite" || ri["invite_state"] != nil || ri["timeline_events"] != nil {
		t.Fatalf("invite: %v", ri)
	}
	if st, _ := ri["stripped_state"].([]any); len(st) == 0 {
		t.Fatalf("invite without stripped_state: %v", ri)
	}
	if got := anyStrings(ri["lists"]); !slices.Equal(got, []string{"invites", "top"}) {
		t.Fatalf("invite's lists %v", got)
	}
	// Joined rooms: "all" only.
	ru := ssRoom(r1, unnamed)
	if ru == nil || ru["membership"] != "join" || ru["initial"] != true || ru["timeline"] != nil || ru["name"] != nil {
		t.Fatalf("unnamed: %v", ru)
	}
	if tl, _ := ru["timeline_events"].([]any); len(tl) != 1 || dig(tl[0], "content", "body") != "bob was here" {
		t.Fatalf("unnamed timeline_events: %v", ru)
	}
	if got := anyStrings(ru["lists"]); !slices.Equal(got, []string{"all"}) {
		t.Fatalf("unnamed's lists %v", got)
	}
	if got := stateTypes(ru); len(got) != 0 {
		t.Fatalf("a literal $ME matched: %v", got)
	}
	ro := ssRoom(r1, old)
	if ro == nil || ro["name"] != "old" || !slices.Equal(stateTypes(ro), []string{"m.room.name|"}) {
		t.Fatalf("old: %v", ro)
	}

	// A message in old moves it to the top: woken from a long-poll with
	// pos and timeout in the body, the room comes with what "top" asks
	// (its state but the create event, its sender's member event: lazy
	// members are not excluded) and the larger timeline.
	done := make(chan *hstest.Response, 1)
	go func() { done <- ssStable(t, s, alice, body(r1.Str("pos"), 20000, 1)) }()
	send(t, s, alice, old, "m1", "news")
	r2 := <-done
	if r2.Status != 200 {
		t.Fatalf("long-poll: %d %s", r2.Status, r2.Body)
	}
	ro = ssRoom(r2, old)
	if ro == nil || ro["membership"] != "join" || !slices.Equal(anyStrings(ro["lists"]), []string{"all", "top"}) {
		t.Fatalf("old after the message: %s", r2.Body)
	}
	got := stateTypes(ro)
	if slices.Contains(got, "m.room.create|") || !slices.Contains(got, "m.room.topic|") || !slices.Contains(got, "m.room.member|"+alice.UserID) {
		t.Fatalf("old's state %v", got)
	}
	if tl, _ := ro["timeline_events"].([]any); len(tl) != 1 || dig(tl[0], "content", "body") != "news" {
		t.Fatalf("old's timeline_events: %v", ro)
	}

	// A larger timeline_limit: the latest events again, expanded_timeline.
	r3 := ssStableOK(t, s, alice, body(r2.Str("pos"), 0, 5))
	ro = ssRoom(r3, old)
	if ro == nil || ro["expanded_timeline"] != true || ro["unstable_expanded_timeline"] != nil {
		t.Fatalf("expanded: %s", r3.Body)
	}
	if tl, _ := ro["timeline_events"].([]any); len(tl) != 5 {
		t.Fatalf("expanded timeline_events: %v", ro)
	}
	// An incremental room without a name says so (null).
	send(t, s, bob, unnamed, "b2", "again")
	r4 := ssStableOK(t, s, alice, body(r3.Str("pos"), 10000, 5))
	if ru := ssRoom(r4, unnamed); ru == nil || ru["initial"] != nil {
		t.Fatalf("unnamed again: %s", r4.Body)
	} else if v, ok := ru["name"]; !ok || v != nil {
		t.Fatalf("an unnamed room's incremental name %v (present %v), want null", v, ok)
	}
	// The position is the engine's: the unstable endpoint's unknown
	// positions are unknown here too.
	bad := body("v4_garbage", 0, 1)
	expectErr(t, ssStable(t, s, alice, bad), 400, "M_UNKNOWN_POS")
}

func anyStrings(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// TestSlidingSyncStableErrors: what the stable encoding refuses.
func TestSlidingSyncStableErrors(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	list := func(mod func(l map[string]any)) map[string]any {
		l := map[string]any{"range": []int{0, 9}, "timeline_limit": 1, "required_state": map[string]any{"include": []any{}}}
		mod(l)
		return map[string]any{"lists": map[string]any{"l": l}}
	}
	for name, c := range map[string]struct {
		body any
		code string
	}{
		"three-element range":    {list(func(l map[string]any) { l["range"] = []int{0, 1, 2} }), "M_INVALID_PARAM"},
		"range end before start": {list(func(l map[string]any) { l["range"] = []int{5, 1} }), "M_INVALID_PARAM"},
		"unstable ranges":        {list(func(l map[string]any) { l["range"] = [][]int{{0, 1}} }), "M_BAD_JSON"},
		"no timeline_limit":      {list(func(l map[string]any) { delete(l, "timeline_limit") }), "M_INVALID_PARAM"},
		"no required_state":      {list(func(l map[string]any) { delete(l, "required_state") }), "M_INVALID_PARAM"},
		"unstable required_state": {list(func(l map[string]any) { l["required_state"] = [][]string{{"m.room.name", ""}} }),
			"M_BAD_JSON"},
		"negative timeline_limit": {list(func(l map[string]any) { l["timeline_limit"] = -1 }), "M_INVALID_PARAM"},
		"unknown set_presence":    {map[string]any{"set_presence": "busy"}, "M_INVALID_PARAM"},
		"negative timeout":        {map[string]any{"pos": "x", "timeout": -1}, "M_INVALID_PARAM"},
		"subscription without a config": {map[string]any{"room_subscriptions": map[string]any{"!a:b": map[string]any{"timeline_limit": 1}}},
			"M_INVALID_PARAM"},
		"not JSON":  {"{", "M_NOT_JSON"},
		"not a map": {"[]", "M_BAD_JSON"},
	} {
		t.Run(name, func(t *testing.T) {
			expectErr(t, ssStable(t, s, alice, c.body), 400, c.code)
		})
	}
	// set_presence offline keeps the user from being marked online (the
	// POST itself is not activity); without it they are online.
	bob := s.CreateUser(t, "bob")
	ssStableOK(t, s, bob, map[string]any{"set_presence": "offline"})
	presence := func() any {
		return s.MustOK(t, "GET", hstest.Path("/presence/%s/status", bob.UserID), bob.Token, nil).JSON["presence"]
	}
	if p := presence(); p != "offline" {
		t.Fatalf("presence after set_presence offline: %v", p)
	}
	ssStableOK(t, s, bob, map[string]any{})
	if p := presence(); p != "online" {
		t.Fatalf("presence after a sync: %v", p)
	}
}
