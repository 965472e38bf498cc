package retention_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"conclave/internal/config"
	"conclave/internal/homeserver/hstest"
	"conclave/internal/retention"
)

func withRetention(c *config.Config) {
	c.Retention = true
	// The background run at start purges nothing (events are new); the
	// tests run purges with their own clock.
	c.RetentionPurgeInterval = config.Duration{Duration: 24 * time.Hour}
}

type clientEvent struct {
	Type     string          `json:"type"`
	EventID  string          `json:"event_id"`
	StateKey *string         `json:"state_key"`
	Content  json.RawMessage `json:"content"`
}

func (e clientEvent) body() string {
	var c struct {
		Body string `json:"body"`
	}
	json.Unmarshal(e.Content, &c)
	return c.Body
}

// messages pages the room backwards to its start and returns every event.
func messages(t *testing.T, s *hstest.Server, u *hstest.User, roomID string) []clientEvent {
	t.Helper()
	var out []clientEvent
	from := ""
	for page := 0; page < 100; page++ {
		q := "?dir=b&limit=7"
		if from != "" {
			q += "&from=" + url.QueryEscape(from)
		}
		r := s.MustOK(t, "GET", hstest.Path("/rooms/%s/messages", roomID)+q, u.Token, nil)
		var res struct {
			Chunk []clientEvent `json:"chunk"`
			End   string        `json:"end"`
		}
		if err := json.Unmarshal(r.Body, &res); err != nil {
			t.Fatal(err)
		}
		out = append(out, res.Chunk...)
		if res.End == "" {
			return out
		}
		from = res.End
	}
	t.Fatal("/messages never ended")
	return nil
}

func bodies(evs []clientEvent) []string {
	var out []string
	for _, e := range evs {
		if b := e.body(); b != "" {
			out = append(out, b)
		}
	}
	return out
}

func send(t *testing.T, s *hstest.Server, u *hstest.User, roomID, txn string, content map[string]any) string {
	t.Helper()
	return s.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/%s", roomID, txn), u.Token, content).Str("event_id")
}

func text(body string) map[string]any { return map[string]any{"msgtype": "m.text", "body": body} }

// A room whose m.room.retention gives events an hour: a purge an hour and a
// bit later (the clock is the test's) takes its messages but the last one
// and keeps every state event; clients see them gone everywhere; a room
// without a policy keeps everything; the room works on afterwards.
func TestRetentionPurgesExpiredMessages(t *testing.T) {
	s := hstest.Start(t, withRetention)
	alice := s.Register(t, "alice")
	bob := s.Register(t, "bob")
	roomID := s.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{
		"preset": "public_chat", "name": "kept name",
		"initial_state": []any{map[string]any{"type": "m.room.retention", "state_key": "", "content": map[string]any{"max_lifetime": 3600_000, "min_lifetime": 60_000}}},
	}).Str("room_id")
	plain := s.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	s.MustOK(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID), bob.Token, map[string]any{})
	sinceBefore := s.MustOK(t, "GET", "/_matrix/client/v3/sync?timeout=0", bob.Token, nil).Str("next_batch")

	first := send(t, s, alice, roomID, "1", text("phoenix first"))
	send(t, s, alice, roomID, "2", map[string]any{"msgtype": "m.text", "body": "phoenix reply " + bob.UserID,
		"m.relates_to": map[string]any{"m.in_reply_to": map[string]any{"event_id": first}}})
	s.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.reaction/r", roomID), bob.Token, map[string]any{
		"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": first, "key": "👍"}})
	s.MustOK(t, "PUT", hstest.Path("/rooms/%s/state/m.room.topic/", roomID), alice.Token, map[string]any{"topic": "phoenix topic"})
	send(t, s, alice, roomID, "3", map[string]any{"msgtype": "m.text", "body": "* phoenix edited", "m.new_content": text("phoenix edited"),
		"m.relates_to": map[string]any{"rel_type": "m.replace", "event_id": first}})
	last := send(t, s, alice, roomID, "4", text("phoenix last"))
	send(t, s, alice, plain, "p", text("phoenix plain"))

	// A /messages token that will point into the purged range.
	page := s.MustOK(t, "GET", hstest.Path("/rooms/%s/messages", roomID)+"?dir=b&limit=3", bob.Token, nil)
	inside := page.Str("end")
	ctxToken := s.MustOK(t, "GET", hstest.Path("/rooms/%s/context/%s", roomID, first)+"?limit=2", bob.Token, nil).Str("start")

	res, err := s.HS.Retention.RunAt(context.Background(), time.Now().Add(time.Hour+time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if res.Purged != 4 || res.Rooms != 1 {
		t.Fatalf("purge run: %+v, want 4 events of 1 room (three messages and the reaction)", res)
	}

	// /messages: the state and the last message, nothing purged.
	evs := messages(t, s, bob, roomID)
	if got := strings.Join(bodies(evs), "|"); got != "phoenix last" {
		t.Fatalf("/messages after the purge: %q", got)
	}
	types := map[string]bool{}
	for _, e := range evs {
		types[e.Type] = true
	}
	for _, typ := range []string{"m.room.create", "m.room.topic", "m.room.name", "m.room.retention", "m.room.member", "m.room.power_levels"} {
		if !types[typ] {
			t.Fatalf("/messages lost the state event %s: %v", typ, types)
		}
	}
	if types["m.reaction"] {
		t.Fatal("/messages still has the purged reaction")
	}
	// The plain room keeps its history.
	if got := bodies(messages(t, s, alice, plain)); len(got) != 1 {
		t.Fatalf("room without a policy: %v", got)
	}

	// Tokens from before the purge that point into it still page, both ways.
	for _, tok := range []string{inside, ctxToken} {
		for _, dir := range []string{"b", "f"} {
			r := s.MustOK(t, "GET", hstest.Path("/rooms/%s/messages", roomID)+"?limit=20&dir="+dir+"&from="+url.QueryEscape(tok), bob.Token, nil)
			if strings.Contains(string(r.Body), "phoenix first") || strings.Contains(string(r.Body), "phoenix edited") {
				t.Fatalf("/messages from %s (%s) shows purged events: %s", tok, dir, r.Body)
			}
		}
	}

	// /context and /event of a purged event: 404; of the last one: fine.
	for _, p := range []string{hstest.Path("/rooms/%s/context/%s", roomID, first), hstest.Path("/rooms/%s/event/%s", roomID, first)} {
		if r := s.Do(t, "GET", p, bob.Token, nil); r.Status != 404 || r.Errcode() != "M_NOT_FOUND" {
			t.Fatalf("GET %s: %d %s", p, r.Status, r.Body)
		}
	}
	cx := s.MustOK(t, "GET", hstest.Path("/rooms/%s/context/%s", roomID, last)+"?limit=10", bob.Token, nil)
	if strings.Contains(string(cx.Body), "phoenix first") || strings.Contains(string(cx.Body), "phoenix edited") {
		t.Fatalf("/context around the last event shows purged events: %s", cx.Body)
	}
	// Relations of a purged event: the event is unknown (404), like /event.
	rel := s.Do(t, "GET", "/_matrix/client/v1"+strings.TrimPrefix(hstest.Path("/rooms/%s/relations/%s", roomID, first), "/_matrix/client/v3"), bob.Token, nil)
	if rel.Status != 404 || rel.Errcode() != "M_NOT_FOUND" {
		t.Fatalf("relations of a purged event: %s", rel.Body)
	}

	// /sync from a token before the purged events, and an initial one.
	for _, since := range []string{sinceBefore, ""} {
		q := "/_matrix/client/v3/sync?timeout=0"
		if since != "" {
			q += "&since=" + url.QueryEscape(since)
		}
		r := s.MustOK(t, "GET", q, bob.Token, nil)
		for _, purged := range []string{"phoenix first", "phoenix reply", "phoenix edited", "👍"} {
			if strings.Contains(string(r.Body), purged) {
				t.Fatalf("/sync (since %q) shows a purged event (%s): %s", since, purged, r.Body)
			}
		}
		if !strings.Contains(string(r.Body), "phoenix last") {
			t.Fatalf("/sync (since %q) lost the last message: %s", since, r.Body)
		}
		var body struct {
			Rooms struct {
				Join map[string]struct {
					Unread struct {
						Notifications int `json:"notification_count"`
					} `json:"unread_notifications"`
				} `json:"join"`
			} `json:"rooms"`
		}
		json.Unmarshal(r.Body, &body)
		if n := body.Rooms.Join[roomID].Unread.Notifications; n != 1 {
			t.Fatalf("bob's notification count after the purge: %d, want 1 (the last message)", n)
		}
	}
	// GET /notifications keeps none of the purged events (their rows, the
	// common outcome's included, go with them).
	if r := s.MustOK(t, "GET", "/_matrix/client/v3/notifications", bob.Token, nil); strings.Count(string(r.Body), `"event_id"`) != 1 {
		t.Fatalf("bob's notifications after the purge: %s", r.Body)
	}

	// Search finds what is left.
	sr := s.MustOK(t, "POST", "/_matrix/client/v3/search", bob.Token, map[string]any{"search_categories": map[string]any{"room_events": map[string]any{"search_term": "phoenix"}}})
	for _, purged := range []string{"phoenix first", "phoenix reply", "phoenix edited"} {
		if strings.Contains(string(sr.Body), purged) {
			t.Fatalf("search finds a purged event: %s", sr.Body)
		}
	}
	if !strings.Contains(string(sr.Body), "phoenix last") || !strings.Contains(string(sr.Body), "phoenix topic") {
		t.Fatalf("search lost events it should find: %s", sr.Body)
	}

	// The room goes on: a new message, seen in /messages and /sync.
	newer := send(t, s, bob, roomID, "5", text("after the purge"))
	if got := strings.Join(bodies(messages(t, s, alice, roomID)), "|"); got != "after the purge|phoenix last" {
		t.Fatalf("/messages after a new message: %q", got)
	}
	r := s.MustOK(t, "GET", "/_matrix/client/v3/sync?timeout=0&since="+url.QueryEscape(sinceBefore), alice.Token, nil)
	if !strings.Contains(string(r.Body), newer) {
		t.Fatalf("/sync misses the new message: %s", r.Body)
	}

	// A second run finds nothing more; the former last message goes once
	// it is not the latest any more and has expired.
	res, err = s.HS.Retention.RunAt(context.Background(), time.Now().Add(time.Hour+time.Minute))
	if err != nil || res.Purged != 1 {
		t.Fatalf("second run: %+v %v, want the former last message only", res, err)
	}
	if got := strings.Join(bodies(messages(t, s, alice, roomID)), "|"); got != "after the purge" {
		t.Fatalf("/messages after the second run: %q", got)
	}
}

// The policy: the room's max_lifetime, else the default, within the allowed
// range; values that are not positive integers count as absent.
func TestLifetime(t *testing.T) {
	s := retention.New(nil, nil, retention.Config{DefaultMaxLifetime: 48 * time.Hour, AllowedMin: time.Hour, AllowedMax: 30 * 24 * time.Hour}, nil)
	for _, c := range []struct {
		content string
		want    time.Duration
	}{
		{`{}`, 48 * time.Hour},
		{`{"max_lifetime":7200000}`, 2 * time.Hour},
		{`{"max_lifetime":1000}`, time.Hour},
		{`{"max_lifetime":99999999999999}`, 30 * 24 * time.Hour},
		{`{"max_lifetime":"7200000"}`, 48 * time.Hour},
		{`{"max_lifetime":-5}`, 48 * time.Hour},
		{`{"max_lifetime":1.5}`, 48 * time.Hour},
		{`{"min_lifetime":7200000}`, 48 * time.Hour},
	} {
		got := s.Lifetime(retention.ParsePolicy([]byte(fmt.Sprintf(`{"type":"m.room.retention","content":%s}`, c.content))))
		if got != c.want {
			t.Errorf("%s: %v, want %v", c.content, got, c.want)
		}
	}
	none := retention.New(nil, nil, retention.Config{}, nil)
	if got := none.Lifetime(retention.Policy{}); got != 0 {
		t.Fatalf("no default, no policy: %v", got)
	}
}

// A local user's m.room.retention must be readable (Synapse's validator):
// integers, min_lifetime not above max_lifetime; else 400 M_BAD_JSON.
func TestRetentionEventValidated(t *testing.T) {
	s := hstest.Start(t)
	alice := s.Register(t, "alice")
	roomID := s.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{}).Str("room_id")
	path := hstest.Path("/rooms/%s/state/m.room.retention/", roomID)
	for _, bad := range []string{`{"max_lifetime":"86400000"}`, `{"max_lifetime":1.5}`, `{"min_lifetime":true}`, `{"min_lifetime":10,"max_lifetime":5}`} {
		if r := s.Do(t, "PUT", path, alice.Token, bad); r.Status != 400 || r.Errcode() != "M_BAD_JSON" {
			t.Errorf("%s: %d %s", bad, r.Status, r.Body)
		}
	}
	for _, good := range []string{`{"max_lifetime":86400000}`, `{"min_lifetime":5,"max_lifetime":5}`, `{}`} {
		s.MustOK(t, "PUT", path, alice.Token, good)
	}
	r := s.Do(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{
		"initial_state": []any{map[string]any{"type": "m.room.retention", "state_key": "", "content": map[string]any{"max_lifetime": "forever"}}}})
	if r.Status != 400 || r.Errcode() != "M_BAD_JSON" {
		t.Fatalf("createRoom with a bad retention event: %d %s", r.Status, r.Body)
	}
}
