package clientapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"conclave/internal/homeserver/hstest"
	"conclave/internal/room"
)

func sendText(t *testing.T, s *hstest.Server, roomID, sender, typ string, content map[string]any) string {
	t.Helper()
	b, _ := json.Marshal(content)
	req := &room.SendRequest{RoomID: roomID, Sender: sender, DeviceID: "D", TxnID: fmt.Sprint(txnSeq.Add(1)), Type: typ, Content: b}
	if typ != "m.room.message" {
		empty := ""
		req.StateKey, req.TxnID = &empty, ""
	}
	id, err := s.HS.Rooms.Send(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

type searchResult struct {
	SearchCategories struct {
		RoomEvents struct {
			Count      int      `json:"count"`
			NextBatch  *string  `json:"next_batch"`
			Highlights []string `json:"highlights"`
			Results    []struct {
				Rank   float64 `json:"rank"`
				Result struct {
					EventID string         `json:"event_id"`
					RoomID  string         `json:"room_id"`
					Sender  string         `json:"sender"`
					Content map[string]any `json:"content"`
				} `json:"result"`
				Context *struct {
					Start       string                    `json:"start"`
					End         string                    `json:"end"`
					Before      []map[string]any          `json:"events_before"`
					After       []map[string]any          `json:"events_after"`
					ProfileInfo map[string]map[string]any `json:"profile_info"`
				} `json:"context"`
			} `json:"results"`
			State  map[string][]any                     `json:"state"`
			Groups map[string]map[string]map[string]any `json:"groups"`
		} `json:"room_events"`
	} `json:"search_categories"`
}

func doSearch(t *testing.T, s *hstest.Server, token string, crit map[string]any, next string) *searchResult {
	t.Helper()
	path := "/_matrix/client/v3/search"
	if next != "" {
		path += "?next_batch=" + url.QueryEscape(next)
	}
	r := s.MustOK(t, "POST", path, token, map[string]any{"search_categories": map[string]any{"room_events": crit}})
	var out searchResult
	if err := json.Unmarshal(r.Body, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

func TestSearchRoomEvents(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	carol := s.CreateUser(t, "carol")
	shared := makeRoom(t, s, false, map[string]string{alice.UserID: "join", bob.UserID: "join"})
	private := makeRoom(t, s, false, map[string]string{carol.UserID: "join"})

	hello := sendText(t, s, shared, bob.UserID, "m.room.message", map[string]any{"msgtype": "m.text", "body": "Hello, wörld"})
	sendText(t, s, private, carol.UserID, "m.room.message", map[string]any{"msgtype": "m.text", "body": "hello from a room alice cannot see"})
	sendText(t, s, shared, alice.UserID, "m.room.topic", map[string]any{"topic": "greetings and hellos"})
	var ids []string
	for i := 0; i < 7; i++ {
		ids = append(ids, sendText(t, s, shared, alice.UserID, "m.room.message", map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("Message number %d", i)}))
	}

	// By body, prefix and case-insensitive; only rooms the user is in.
	res := doSearch(t, s, alice.Token, map[string]any{"search_term": "HELL", "keys": []string{"content.body"}}, "")
	re := res.SearchCategories.RoomEvents
	if re.Count != 1 || len(re.Results) != 1 || re.Results[0].Result.EventID != hello || re.Results[0].Result.RoomID != shared ||
		re.Results[0].Result.Content["body"] != "Hello, wörld" || re.NextBatch != nil || re.Results[0].Rank <= 0 {
		t.Fatalf("body search: %+v", re)
	}
	// Default keys include topics.
	if re = doSearch(t, s, alice.Token, map[string]any{"search_term": "hellos"}, "").SearchCategories.RoomEvents; re.Count != 1 {
		t.Fatalf("topic search: %+v", re)
	}
	// Diacritics are folded.
	if re = doSearch(t, s, alice.Token, map[string]any{"search_term": "world"}, "").SearchCategories.RoomEvents; re.Count != 1 {
		t.Fatalf("diacritics: %+v", re)
	}
	// All words must match; context around the result.
	res = doSearch(t, s, alice.Token, map[string]any{"search_term": "message 4", "order_by": "recent",
		"event_context": map[string]any{"before_limit": 2, "after_limit": 2, "include_profile": true}}, "")
	re = res.SearchCategories.RoomEvents
	if re.Count != 1 || re.Results[0].Result.EventID != ids[4] {
		t.Fatalf("two words: %+v", re)
	}
	c := re.Results[0].Context
	if c == nil || len(c.Before) != 2 || c.Before[0]["content"].(map[string]any)["body"] != "Message number 3" ||
		c.Before[1]["content"].(map[string]any)["body"] != "Message number 2" || len(c.After) != 2 ||
		c.After[0]["content"].(map[string]any)["body"] != "Message number 5" || c.Start == "" || c.End == "" || c.ProfileInfo[alice.UserID] == nil {
		t.Fatalf("context: %+v", c)
	}

	// Pagination, newest first.
	crit := map[string]any{"search_term": "message", "order_by": "recent", "filter": map[string]any{"limit": 3, "rooms": []string{shared}}}
	var got []string
	next := ""
	for page := 0; page < 5; page++ {
		re = doSearch(t, s, alice.Token, crit, next).SearchCategories.RoomEvents
		if re.Count != 7 {
			t.Fatalf("count on page %d: %d", page, re.Count)
		}
		for _, r := range re.Results {
			got = append(got, r.Result.EventID)
		}
		if re.NextBatch == nil {
			break
		}
		next = *re.NextBatch
	}
	if len(got) != 7 || got[0] != ids[6] || got[6] != ids[0] {
		t.Fatalf("recent pagination: %v", got)
	}
	// Rank pagination finds each result once.
	crit["order_by"] = "rank"
	seen := map[string]bool{}
	next = ""
	for page := 0; page < 5; page++ {
		re = doSearch(t, s, alice.Token, crit, next).SearchCategories.RoomEvents
		for _, r := range re.Results {
			if seen[r.Result.EventID] {
				t.Fatalf("rank pagination repeated %s", r.Result.EventID)
			}
			seen[r.Result.EventID] = true
		}
		if re.NextBatch == nil {
			break
		}
		next = *re.NextBatch
	}
	if len(seen) != 7 {
		t.Fatalf("rank pagination found %d", len(seen))
	}

	// Filters: senders, types, not_rooms; groupings and state.
	re = doSearch(t, s, alice.Token, map[string]any{"search_term": "hello", "filter": map[string]any{"senders": []string{carol.UserID}}}, "").SearchCategories.RoomEvents
	if re.Count != 0 {
		t.Fatalf("senders filter: %+v", re)
	}
	re = doSearch(t, s, alice.Token, map[string]any{"search_term": "hello", "filter": map[string]any{"types": []string{"m.room.*"}, "not_types": []string{"m.room.topic"}}}, "").SearchCategories.RoomEvents
	if re.Count != 1 {
		t.Fatalf("types filter: %+v", re)
	}
	re = doSearch(t, s, alice.Token, map[string]any{"search_term": "hello", "filter": map[string]any{"not_rooms": []string{shared}}}, "").SearchCategories.RoomEvents
	if re.Count != 0 {
		t.Fatalf("not_rooms filter: %+v", re)
	}
	re = doSearch(t, s, alice.Token, map[string]any{"search_term": "hello", "include_state": true,
		"groupings": map[string]any{"group_by": []map[string]any{{"key": "room_id"}, {"key": "sender"}}}}, "").SearchCategories.RoomEvents
	if len(re.State[shared]) == 0 || re.Groups["room_id"][shared] == nil || re.Groups["sender"][bob.UserID] == nil {
		t.Fatalf("state and groups: %+v", re)
	}
	// Nothing to search for.
	if re = doSearch(t, s, alice.Token, map[string]any{"search_term": "!!!"}, "").SearchCategories.RoomEvents; re.Count != 0 || re.Results == nil {
		t.Fatalf("empty term: %+v", re)
	}

	// Redacted events are not found.
	if _, err := s.HS.Rooms.Send(context.Background(), &room.SendRequest{RoomID: shared, Sender: bob.UserID, DeviceID: "D", TxnID: "r1",
		Type: "m.room.redaction", Content: []byte(`{}`), Redacts: hello}); err != nil {
		t.Fatal(err)
	}
	if re = doSearch(t, s, alice.Token, map[string]any{"search_term": "hello", "keys": []string{"content.body"}}, "").SearchCategories.RoomEvents; re.Count != 0 {
		t.Fatalf("redacted found: %+v", re)
	}
	// History visibility: a user joining a "joined" room later cannot find
	// earlier messages.
	sendText(t, s, shared, alice.UserID, "m.room.history_visibility", map[string]any{"history_visibility": "joined"})
	sendText(t, s, shared, alice.UserID, "m.room.message", map[string]any{"msgtype": "m.text", "body": "secret plans"})
	membership(t, s, shared, alice.UserID, carol.UserID, "invite")
	setMembership(t, s, shared, carol.UserID, "join")
	if re = doSearch(t, s, carol.Token, map[string]any{"search_term": "secret"}, "").SearchCategories.RoomEvents; len(re.Results) != 0 {
		t.Fatalf("history visibility: %+v", re)
	}

	// Errors.
	path := "/_matrix/client/v3/search"
	expectErr(t, s.Do(t, "POST", path, "", map[string]any{}), 401, "M_MISSING_TOKEN")
	expectErr(t, s.Do(t, "POST", path, alice.Token, `{`), 400, "M_NOT_JSON")
	expectErr(t, s.Do(t, "POST", path, alice.Token, map[string]any{}), 400, "M_MISSING_PARAM")
	bad := func(crit map[string]any, next string, code string) {
		t.Helper()
		p := path
		if next != "" {
			p += "?next_batch=" + next
		}
		expectErr(t, s.Do(t, "POST", p, alice.Token, map[string]any{"search_categories": map[string]any{"room_events": crit}}), 400, code)
	}
	bad(map[string]any{}, "", "M_MISSING_PARAM")
	bad(map[string]any{"search_term": 5}, "", "M_BAD_JSON")
	bad(map[string]any{"search_term": "x", "keys": []string{"content.secret"}}, "", "M_INVALID_PARAM")
	bad(map[string]any{"search_term": "x", "order_by": "random"}, "", "M_INVALID_PARAM")
	bad(map[string]any{"search_term": "x", "filter": map[string]any{"limit": 0}}, "", "M_INVALID_PARAM")
	bad(map[string]any{"search_term": "x", "filter": map[string]any{"rooms": make([]string, 101)}}, "", "M_INVALID_PARAM")
	bad(map[string]any{"search_term": "x", "event_context": map[string]any{"before_limit": -1}}, "", "M_INVALID_PARAM")
	bad(map[string]any{"search_term": "x", "groupings": map[string]any{"group_by": []map[string]any{{"key": "type"}}}}, "", "M_INVALID_PARAM")
	bad(map[string]any{"search_term": strings.Repeat("x", 1001)}, "", "M_INVALID_PARAM")
	bad(map[string]any{"search_term": "x", "order_by": "recent"}, "k3", "M_INVALID_PARAM")
	bad(map[string]any{"search_term": "x"}, "zzz", "M_INVALID_PARAM")
}

func TestIgnoredUsers(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	carol := s.CreateUser(t, "carol")
	shared := makeRoom(t, s, false, map[string]string{alice.UserID: "join", bob.UserID: "join", carol.UserID: "join"})
	s.MustOK(t, "PUT", hstest.Path("/user/%s/account_data/m.ignored_user_list", alice.UserID), alice.Token,
		map[string]any{"ignored_users": map[string]any{bob.UserID: map[string]any{}}})
	since := s.MustOK(t, "GET", "/_matrix/client/v3/sync", alice.Token, nil).Str("next_batch")

	fromBob := sendText(t, s, shared, bob.UserID, "m.room.message", map[string]any{"msgtype": "m.text", "body": "ignore me"})
	fromCarol := sendText(t, s, shared, carol.UserID, "m.room.message", map[string]any{"msgtype": "m.text", "body": "hello me"})
	bobRoom := makeRoom(t, s, false, map[string]string{bob.UserID: "join"})
	membership(t, s, bobRoom, bob.UserID, alice.UserID, "invite")
	carolRoom := makeRoom(t, s, false, map[string]string{carol.UserID: "join"})
	membership(t, s, carolRoom, carol.UserID, alice.UserID, "invite")

	for _, q := range []string{"?since=" + since, ""} {
		r := s.MustOK(t, "GET", "/_matrix/client/v3/sync"+q, alice.Token, nil)
		body := string(r.Body)
		if strings.Contains(body, fromBob) || !strings.Contains(body, fromCarol) {
			t.Fatalf("sync%s timeline: %s", q, body)
		}
		if strings.Contains(body, bobRoom) || !strings.Contains(body, carolRoom) {
			t.Fatalf("sync%s invites: %s", q, body)
		}
	}
	// Bob's state events are still shown (his membership).
	r := s.MustOK(t, "GET", hstest.Path("/rooms/%s/messages", shared)+"?dir=b&limit=50", alice.Token, nil)
	if strings.Contains(string(r.Body), fromBob) || !strings.Contains(string(r.Body), fromCarol) || !strings.Contains(string(r.Body), `"state_key":"`+bob.UserID) {
		t.Fatalf("messages: %s", r.Body)
	}
	// Search hides them too.
	if re := doSearch(t, s, alice.Token, map[string]any{"search_term": "me"}, "").SearchCategories.RoomEvents; len(re.Results) != 1 || re.Results[0].Result.EventID != fromCarol {
		t.Fatalf("search: %+v", re)
	}
	// Bob still sees everything; unignoring shows bob again.
	if r := s.MustOK(t, "GET", hstest.Path("/rooms/%s/messages", shared)+"?dir=b", bob.Token, nil); !strings.Contains(string(r.Body), fromBob) {
		t.Fatal("bob's own view")
	}
	s.MustOK(t, "PUT", hstest.Path("/user/%s/account_data/m.ignored_user_list", alice.UserID), alice.Token, map[string]any{"ignored_users": map[string]any{}})
	if r := s.MustOK(t, "GET", "/_matrix/client/v3/sync", alice.Token, nil); !strings.Contains(string(r.Body), fromBob) || !strings.Contains(string(r.Body), bobRoom) {
		t.Fatalf("after unignoring: %s", r.Body)
	}
}
