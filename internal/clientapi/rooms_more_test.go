package clientapi_test

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"conclave/internal/homeserver/hstest"
)

func TestJoinWithCustomContent(t *testing.T) {
	s := hstest.Start(t)
	alice, bob := s.CreateUser(t, "alice"), s.CreateUser(t, "bob")
	roomID := createRoom(t, s, alice, map[string]any{"preset": "public_chat"})
	s.MustOK(t, "POST", hstest.Path("/join/%s", roomID), bob.Token, map[string]any{"foo": "bar", "membership": "leave", "reason": "hi"})
	c := s.MustOK(t, "GET", hstest.Path("/rooms/%s/state/m.room.member/%s", roomID, bob.UserID), alice.Token, nil)
	if c.Str("membership") != "join" || c.Str("foo") != "bar" || c.Str("reason") != "hi" {
		t.Fatalf("member content: %s", c.Body)
	}
	if r := s.Do(t, "POST", hstest.Path("/rooms/%s/join", roomID), bob.Token, `{"reason": 5}`); r.Status != 400 || r.Errcode() != "M_BAD_JSON" {
		t.Fatalf("bad reason: %d %s", r.Status, r.Body)
	}
}

func TestForgottenRoomIsGone(t *testing.T) {
	s := hstest.Start(t)
	alice, bob := s.CreateUser(t, "alice"), s.CreateUser(t, "bob")
	roomID := createRoom(t, s, alice, map[string]any{"preset": "public_chat"})
	s.MustOK(t, "POST", hstest.Path("/join/%s", roomID), bob.Token, "{}")
	since := s.MustOK(t, "GET", "/_matrix/client/v3/sync", bob.Token, nil).Str("next_batch")
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/leave", roomID), bob.Token, "{}")
	// Before forgetting, the history up to the leave is readable.
	r := s.MustOK(t, "GET", hstest.Path("/rooms/%s/messages?dir=b", roomID), bob.Token, nil)
	if _, ok := r.JSON["end"].(string); !ok {
		t.Fatalf("a page with events has no end token: %s", r.Body)
	}
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/forget", roomID), bob.Token, "{}")
	// Authorisation comes before parameter checks: no dir, still 403.
	if r := s.Do(t, "GET", hstest.Path("/rooms/%s/messages", roomID), bob.Token, nil); r.Status != 403 {
		t.Fatalf("forgotten room messages: %d %s", r.Status, r.Body)
	}
	// An initial sync no longer knows the room, even with include_leave; an
	// incremental sync from before the leave still reports the leave.
	r = s.MustOK(t, "GET", "/_matrix/client/v3/sync?filter="+url.QueryEscape(`{"room":{"include_leave":true}}`), bob.Token, nil)
	if strings.Contains(string(r.Body), roomID) {
		t.Fatalf("forgotten room still in initial sync: %s", r.Body)
	}
	r = s.MustOK(t, "GET", "/_matrix/client/v3/sync?since="+since, bob.Token, nil)
	if leave, _ := r.JSON["rooms"].(map[string]any)["leave"].(map[string]any); leave[roomID] == nil {
		t.Fatalf("leave missing from incremental sync: %s", r.Body)
	}
}

func TestCanonicalAliasIsValidated(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	roomID := createRoom(t, s, alice, map[string]any{"preset": "public_chat", "room_alias_name": "mine"})
	other := createRoom(t, s, alice, map[string]any{"preset": "public_chat", "room_alias_name": "theirs"})
	_ = other
	path := hstest.Path("/rooms/%s/state/m.room.canonical_alias/", roomID)
	for body, code := range map[string]string{
		`{"alias": "not-an-alias"}`:              "M_INVALID_PARAM",
		`{"alias": "#missing:localhost"}`:        "M_BAD_ALIAS",
		`{"alias": "#theirs:localhost"}`:         "M_BAD_ALIAS",
		`{"alt_aliases": ["#theirs:localhost"]}`: "M_BAD_ALIAS",
		`{"alt_aliases": "x"}`:                   "M_INVALID_PARAM",
	} {
		if r := s.Do(t, "PUT", path, alice.Token, body); r.Status != 400 || r.Errcode() != code {
			t.Errorf("%s: %d %s, want 400 %s", body, r.Status, r.Body, code)
		}
	}
	s.MustOK(t, "PUT", path, alice.Token, `{"alias": "#mine:localhost", "alt_aliases": ["#elsewhere:remote.example"]}`)
}

func TestMembershipOnEventsAndRichTopic(t *testing.T) {
	s := hstest.Start(t)
	alice, bob := s.CreateUser(t, "alice"), s.CreateUser(t, "bob")
	roomID := createRoom(t, s, alice, map[string]any{"preset": "public_chat", "topic": "Budget"})
	topic := s.MustOK(t, "GET", hstest.Path("/rooms/%s/state/m.room.topic/", roomID), alice.Token, nil)
	var tc struct {
		Topic  string `json:"topic"`
		MTopic struct {
			Text []struct{ Body, Mimetype string } `json:"m.text"`
		} `json:"m.topic"`
	}
	json.Unmarshal(topic.Body, &tc)
	if tc.Topic != "Budget" || len(tc.MTopic.Text) != 1 || tc.MTopic.Text[0].Body != "Budget" {
		t.Fatalf("rich topic: %s", topic.Body)
	}
	send(t, s, alice, roomID, "a", "before")
	s.MustOK(t, "POST", hstest.Path("/join/%s", roomID), bob.Token, "{}")
	send(t, s, alice, roomID, "b", "after")
	r := s.MustOK(t, "GET", hstest.Path("/rooms/%s/messages?dir=f&limit=50", roomID), bob.Token, nil)
	var page struct {
		Chunk []struct {
			Type     string  `json:"type"`
			StateKey *string `json:"state_key"`
			Content  struct {
				Body string `json:"body"`
			} `json:"content"`
			Unsigned struct {
				Membership string `json:"membership"`
			} `json:"unsigned"`
		} `json:"chunk"`
	}
	json.Unmarshal(r.Body, &page)
	seen := 0
	for _, e := range page.Chunk {
		want := "leave"
		if e.Content.Body == "after" || (e.Type == "m.room.member" && e.StateKey != nil && *e.StateKey == bob.UserID) {
			want = "join"
		}
		if e.Unsigned.Membership != want {
			t.Errorf("%s %q: membership %q, want %q", e.Type, e.Content.Body, e.Unsigned.Membership, want)
		}
		seen++
	}
	if seen < 5 {
		t.Fatalf("too few events: %s", r.Body)
	}
}
