package clientapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"conclave/internal/homeserver/hstest"
)

// createRoom makes a room and returns its ID.
func createRoom(t *testing.T, s *hstest.Server, u *hstest.User, body any) string {
	t.Helper()
	r := s.MustOK(t, "POST", "/_matrix/client/v3/createRoom", u.Token, body)
	id := r.Str("room_id")
	if !strings.HasPrefix(id, "!") {
		t.Fatalf("room_id %q", id)
	}
	return id
}

func send(t *testing.T, s *hstest.Server, u *hstest.User, roomID, txn, body string) string {
	t.Helper()
	r := s.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/%s", roomID, txn), u.Token, map[string]string{"msgtype": "m.text", "body": body})
	return r.Str("event_id")
}

func TestRoomLifecycle(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	for _, v := range []string{"10", "11", "12"} {
		t.Run("v"+v, func(t *testing.T) {
			roomID := createRoom(t, s, alice, map[string]any{"name": "Cabinet", "topic": "Weekly", "room_version": v, "preset": "private_chat"})
			st := s.MustOK(t, "GET", hstest.Path("/rooms/%s/state/m.room.name/", roomID), alice.Token, nil)
			if st.Str("name") != "Cabinet" {
				t.Fatalf("name: %s", st.Body)
			}
			// Bob cannot join an invite-only room, nor read it.
			if r := s.Do(t, "POST", hstest.Path("/rooms/%s/join", roomID), bob.Token, "{}"); r.Status != http.StatusForbidden || r.Errcode() != "M_FORBIDDEN" {
				t.Fatalf("uninvited join: %d %s", r.Status, r.Body)
			}
			if r := s.Do(t, "GET", hstest.Path("/rooms/%s/messages?dir=b", roomID), bob.Token, nil); r.Status != http.StatusForbidden {
				t.Fatalf("outsider messages: %d %s", r.Status, r.Body)
			}
			s.MustOK(t, "POST", hstest.Path("/rooms/%s/invite", roomID), alice.Token, map[string]string{"user_id": bob.UserID})
			s.MustOK(t, "POST", hstest.Path("/rooms/%s/join", roomID), bob.Token, nil)
			e1 := send(t, s, alice, roomID, "t1", "hello")
			// The same transaction ID from the same device is the same event.
			if again := send(t, s, alice, roomID, "t1", "hello"); again != e1 {
				t.Fatalf("txn not idempotent: %s vs %s", again, e1)
			}
			e2 := send(t, s, bob, roomID, "t1", "hi")
			if e2 == e1 {
				t.Fatal("different users' txn IDs collided")
			}
			r := s.MustOK(t, "GET", hstest.Path("/rooms/%s/messages?dir=b&limit=2", roomID), bob.Token, nil)
			chunk, _ := r.JSON["chunk"].([]any)
			if len(chunk) != 2 || chunk[0].(map[string]any)["event_id"] != e2 || chunk[1].(map[string]any)["event_id"] != e1 {
				t.Fatalf("messages: %s", r.Body)
			}
			// Page back to the beginning: the create event ends the history.
			end := r.Str("end")
			var types []string
			for i := 0; end != "" && i < 20; i++ {
				r = s.MustOK(t, "GET", hstest.Path("/rooms/%s/messages?dir=b&limit=3&from=%s", roomID, end), bob.Token, nil)
				for _, e := range r.JSON["chunk"].([]any) {
					types = append(types, e.(map[string]any)["type"].(string))
				}
				end = r.Str("end")
			}
			if len(types) == 0 || types[len(types)-1] != "m.room.create" {
				t.Fatalf("history does not end at create: %v", types)
			}
			// Redaction by the sender strips the content.
			s.MustOK(t, "PUT", hstest.Path("/rooms/%s/redact/%s/r1", roomID, e1), alice.Token, map[string]string{"reason": "typo"})
			ev := s.MustOK(t, "GET", hstest.Path("/rooms/%s/event/%s", roomID, e1), bob.Token, nil)
			if c, _ := ev.JSON["content"].(map[string]any); len(c) != 0 {
				t.Fatalf("redacted content kept: %s", ev.Body)
			}
			if u, _ := ev.JSON["unsigned"].(map[string]any); u["redacted_because"] == nil {
				t.Fatalf("no redacted_because: %s", ev.Body)
			}
			// Bob (power 0) may not redact Alice's event.
			if r := s.Do(t, "PUT", hstest.Path("/rooms/%s/redact/%s/r2", roomID, e2), alice.Token, "{}"); r.Status != http.StatusOK {
				t.Fatalf("admin redacting: %d %s", r.Status, r.Body)
			}
			e3 := send(t, s, alice, roomID, "t3", "again")
			if r := s.Do(t, "PUT", hstest.Path("/rooms/%s/redact/%s/r3", roomID, e3), bob.Token, "{}"); r.Status != http.StatusForbidden {
				t.Fatalf("bob redacting alice: %d %s", r.Status, r.Body)
			}
			// An event this server never received: Alice (redact level)
			// may redact it, as Synapse lets her (it may be another
			// server's); Bob may not, and learns it is unknown.
			unknown := "$neverSeenHere0000000000000000000000000000000"
			if r := s.Do(t, "PUT", hstest.Path("/rooms/%s/redact/%s/r4", roomID, unknown), alice.Token, "{}"); r.Status != http.StatusOK {
				t.Fatalf("admin redacting an unknown event: %d %s", r.Status, r.Body)
			}
			if r := s.Do(t, "PUT", hstest.Path("/rooms/%s/redact/%s/r5", roomID, unknown), bob.Token, "{}"); r.Status != http.StatusNotFound {
				t.Fatalf("bob redacting an unknown event: %d %s", r.Status, r.Body)
			}
			// Members and leaving.
			m := s.MustOK(t, "GET", hstest.Path("/rooms/%s/joined_members", roomID), bob.Token, nil)
			if j, _ := m.JSON["joined"].(map[string]any); len(j) != 2 {
				t.Fatalf("joined_members: %s", m.Body)
			}
			s.MustOK(t, "POST", hstest.Path("/rooms/%s/leave", roomID), bob.Token, "{}")
			if r := s.Do(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/t9", roomID), bob.Token, map[string]string{"body": "x"}); r.Status != http.StatusForbidden {
				t.Fatalf("send after leave: %d %s", r.Status, r.Body)
			}
			// After leaving, Bob sees history up to his leave but not later.
			after := send(t, s, alice, roomID, "t4", "secret")
			r = s.MustOK(t, "GET", hstest.Path("/rooms/%s/messages?dir=b&limit=50", roomID), bob.Token, nil)
			if strings.Contains(string(r.Body), after) {
				t.Fatal("left user sees events after leaving")
			}
			if r := s.Do(t, "GET", hstest.Path("/rooms/%s/event/%s", roomID, after), bob.Token, nil); r.Status != http.StatusNotFound {
				t.Fatalf("left user fetching later event: %d", r.Status)
			}
			s.MustOK(t, "POST", hstest.Path("/rooms/%s/forget", roomID), bob.Token, "{}")
		})
	}
}

func TestRoomErrors(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	roomID := createRoom(t, s, alice, map[string]any{})
	cases := []struct {
		name, method, path string
		body               any
		status             int
		errcode            string
	}{
		{"not json", "POST", "/_matrix/client/v3/createRoom", "{nope", 400, "M_NOT_JSON"},
		{"wrong type", "POST", "/_matrix/client/v3/createRoom", `{"name": 5}`, 400, "M_BAD_JSON"},
		{"array body", "POST", "/_matrix/client/v3/createRoom", `[]`, 400, "M_BAD_JSON"},
		{"bad version", "POST", "/_matrix/client/v3/createRoom", `{"room_version": "99"}`, 400, "M_UNSUPPORTED_ROOM_VERSION"},
		{"bad preset", "POST", "/_matrix/client/v3/createRoom", `{"preset": "party"}`, 400, "M_BAD_JSON"},
		{"create in initial_state", "POST", "/_matrix/client/v3/createRoom", `{"initial_state": [{"type": "m.room.create", "state_key": "", "content": {}}]}`, 400, "M_BAD_JSON"},
		{"forged member", "POST", "/_matrix/client/v3/createRoom", `{"initial_state": [{"type": "m.room.member", "state_key": "@bob:localhost", "content": {"membership": "join"}}]}`, 403, "M_FORBIDDEN"},
		{"bad invitee", "POST", "/_matrix/client/v3/createRoom", `{"invite": ["bob"]}`, 400, "M_INVALID_PARAM"},
		{"unknown room send", "PUT", "/_matrix/client/v3/rooms/!nope:localhost/send/m.room.message/1", `{"body":"x"}`, 403, "M_FORBIDDEN"},
		{"bad room id", "PUT", "/_matrix/client/v3/rooms/nope/send/m.room.message/1", `{"body":"x"}`, 400, "M_INVALID_PARAM"},
		{"content not object", "PUT", hstest.Path("/rooms/%s/send/m.room.message/2", roomID), `"text"`, 400, "M_BAD_JSON"},
		{"too large", "PUT", hstest.Path("/rooms/%s/send/m.room.message/3", roomID), `{"body":"` + strings.Repeat("a", 70000) + `"}`, 413, "M_TOO_LARGE"},
		{"nearly too large", "PUT", hstest.Path("/rooms/%s/send/m.room.message/4", roomID), `{"body":"` + strings.Repeat("a", 65300) + `"}`, 413, "M_TOO_LARGE"},
		{"unknown alias join", "POST", "/_matrix/client/v3/join/%23nope:localhost", `{}`, 404, "M_NOT_FOUND"},
		{"messages no dir", "GET", hstest.Path("/rooms/%s/messages", roomID), nil, 400, "M_INVALID_PARAM"},
		{"messages bad from", "GET", hstest.Path("/rooms/%s/messages?dir=b&from=zzz", roomID), nil, 400, "M_INVALID_PARAM"},
		{"invite no user", "POST", hstest.Path("/rooms/%s/invite", roomID), `{}`, 400, "M_MISSING_PARAM"},
		{"unknown event", "GET", hstest.Path("/rooms/%s/event/$nope", roomID), nil, 404, "M_NOT_FOUND"},
		{"unknown state", "GET", hstest.Path("/rooms/%s/state/m.room.topic/", roomID), nil, 404, "M_NOT_FOUND"},
		{"power levels bad", "PUT", hstest.Path("/rooms/%s/state/m.room.power_levels/", roomID), `{"users": {"@alice:localhost": "lots"}}`, 403, "M_FORBIDDEN"},
	}
	for _, c := range cases {
		r := s.Do(t, c.method, c.path, alice.Token, c.body)
		if r.Status != c.status || r.Errcode() != c.errcode {
			t.Errorf("%s: got %d %s, want %d %s", c.name, r.Status, truncate(r.Body), c.status, c.errcode)
		}
	}
	// Nothing of the failed requests was written: the room still has only its initial events.
	r := s.MustOK(t, "GET", hstest.Path("/rooms/%s/messages?dir=b&limit=100", roomID), alice.Token, nil)
	for _, e := range r.JSON["chunk"].([]any) {
		if e.(map[string]any)["type"] == "m.room.message" {
			t.Fatalf("a refused message was stored: %v", e.(map[string]any)["event_id"])
		}
	}
}

func truncate(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}

func TestSyncDeliversAndWakes(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	roomID := createRoom(t, s, alice, map[string]any{"preset": "public_chat"})
	first := s.MustOK(t, "GET", "/_matrix/client/v3/sync", bob.Token, nil)
	since := first.Str("next_batch")
	s.MustOK(t, "POST", hstest.Path("/join/%s", roomID), bob.Token, "{}")
	r := s.MustOK(t, "GET", "/_matrix/client/v3/sync?since="+since, bob.Token, nil)
	join := r.JSON["rooms"].(map[string]any)["join"].(map[string]any)
	if join[roomID] == nil {
		t.Fatalf("joined room missing: %s", r.Body)
	}
	since = r.Str("next_batch")

	// A long-poll returns as soon as Alice sends, long before its timeout.
	done := make(chan *hstest.Response, 1)
	go func() {
		done <- s.Do(t, "GET", "/_matrix/client/v3/sync?timeout=30000&since="+since, bob.Token, nil)
	}()
	waitFor(t, func() bool { return s.HS.Notifier.Waiting() > 0 })
	id := send(t, s, alice, roomID, "m1", "ping")
	select {
	case r = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("long-poll did not wake on a new message")
	}
	if !strings.Contains(string(r.Body), id) {
		t.Fatalf("woken sync lacks the message: %s", r.Body)
	}
	var parsed struct {
		Rooms struct {
			Join map[string]struct {
				Timeline struct {
					Events []json.RawMessage `json:"events"`
				} `json:"timeline"`
				UnreadNotifications struct {
					NotificationCount int `json:"notification_count"`
				} `json:"unread_notifications"`
			} `json:"join"`
		} `json:"rooms"`
	}
	json.Unmarshal(r.Body, &parsed)
	if parsed.Rooms.Join[roomID].UnreadNotifications.NotificationCount != 1 {
		t.Fatalf("unread count: %s", r.Body)
	}
	// An idle long-poll with nothing new times out empty.
	r = s.MustOK(t, "GET", "/_matrix/client/v3/sync?timeout=50&since="+r.Str("next_batch"), bob.Token, nil)
	if j := r.JSON["rooms"].(map[string]any)["join"].(map[string]any); len(j) != 0 {
		t.Fatalf("idle sync not empty: %s", r.Body)
	}
	// Errors.
	if r := s.Do(t, "GET", "/_matrix/client/v3/sync?since=garbage", bob.Token, nil); r.Status != 400 {
		t.Fatalf("bad since: %d", r.Status)
	}
	if r := s.Do(t, "GET", "/_matrix/client/v3/sync?filter=999", bob.Token, nil); r.Status != 400 || r.Errcode() != "M_INVALID_PARAM" {
		t.Fatalf("unknown filter: %d", r.Status)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for i := 0; i < 2000; i++ {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("condition not reached")
}
