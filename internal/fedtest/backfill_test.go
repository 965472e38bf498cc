package fedtest

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"conclave/internal/homeserver/hstest"
)

// A room's history from before this server joined it comes from the other
// server when a client pages back to it (/backfill): all of it, in order,
// checked, and never presented by /sync as new.
func TestMessagesBackfillFromOtherServer(t *testing.T) {
	hs := hstest.StartFederation(t, 2)
	a, b := hs[0], hs[1]
	alice := a.Register(t, "alice")
	bob := b.Register(t, "bob")
	roomID := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	const n = 30
	for i := 0; i < n; i++ {
		a.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/%s", roomID, fmt.Sprint("old", i)), alice.Token, map[string]any{"msgtype": "m.text", "body": fmt.Sprint("old ", i)})
	}
	y := newSyncer(t, b, bob)
	b.MustOK(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName), bob.Token, map[string]any{})
	a.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/new", roomID), alice.Token, map[string]any{"msgtype": "m.text", "body": "new"})
	y.waitFor(t, roomID, body("new"))
	noOldInSync := func(res syncResponse) {
		t.Helper()
		for _, ev := range res.Rooms.Join[roomID].Timeline.Events {
			if strings.Contains(string(ev.Content), `"old `) {
				t.Fatalf("/sync presented old history as new: %s", ev.Content)
			}
		}
	}

	// Bob pages back from the end, ten at a time.
	bodies, types, ids := pageBack(t, b, bob, roomID, 10)
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprint("old ", n-1-i)
	}
	if !slices.Equal(oldOnly(bodies), want) {
		t.Fatalf("bob's /messages: %d old messages %v, want %d newest first", len(bodies), bodies, n)
	}
	if len(types) == 0 || types[len(types)-1] != "m.room.create" {
		t.Fatalf("history does not end with the room's creation: %v", types)
	}

	// The context of a backfilled event is the backfilled history around it.
	r := b.MustOK(t, "GET", hstest.Path("/rooms/%s/context/%s", roomID, ids["old 15"])+"?limit=4", bob.Token, nil)
	var cx struct {
		Before []struct {
			Content struct {
				Body string `json:"body"`
			} `json:"content"`
		} `json:"events_before"`
		After []struct {
			Content struct {
				Body string `json:"body"`
			} `json:"content"`
		} `json:"events_after"`
	}
	json.Unmarshal(r.Body, &cx)
	if len(cx.Before) != 2 || cx.Before[0].Content.Body != "old 14" || cx.Before[1].Content.Body != "old 13" ||
		len(cx.After) != 2 || cx.After[0].Content.Body != "old 16" || cx.After[1].Content.Body != "old 17" {
		t.Fatalf("context of a backfilled event: %s", r.Body)
	}

	// /sync after all that: nothing old is new.
	a.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/newer", roomID), alice.Token, map[string]any{"msgtype": "m.text", "body": "newer"})
	for deadline := time.Now().Add(15 * time.Second); ; {
		res := y.sync(t, 2*time.Second)
		noOldInSync(res)
		if slices.ContainsFunc(res.Rooms.Join[roomID].Timeline.Events, func(ev syncEvent) bool { return body("newer")(ev.Type, ev.Sender, ev.Content) }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("bob never saw the newer message")
		}
	}
	// Nor an initial sync's timeline beyond what the server had itself
	// (the join and what followed).
	fresh := newSyncer(t, b, bob)
	for _, ev := range fresh.first.Rooms.Join[roomID].Timeline.Events {
		if strings.Contains(string(ev.Content), `"old `) {
			t.Fatalf("initial /sync shows backfilled history in its timeline: %s", ev.Content)
		}
	}
}

// pageBack pages u's /messages of the room backwards, limit at a time, to
// the end; it returns the message bodies and event types met, newest first,
// and the event IDs by body.
func pageBack(t *testing.T, s *hstest.Server, u *hstest.User, roomID string, limit int) (bodies, types []string, ids map[string]string) {
	t.Helper()
	ids = map[string]string{}
	from := ""
	for page := 0; page < 50; page++ {
		q := fmt.Sprintf("?dir=b&limit=%d", limit)
		if from != "" {
			q += "&from=" + url.QueryEscape(from)
		}
		r := s.MustOK(t, "GET", hstest.Path("/rooms/%s/messages", roomID)+q, u.Token, nil)
		var res struct {
			Chunk []struct {
				Type    string `json:"type"`
				EventID string `json:"event_id"`
				Content struct {
					Body string `json:"body"`
				} `json:"content"`
			} `json:"chunk"`
			End string `json:"end"`
		}
		if err := json.Unmarshal(r.Body, &res); err != nil {
			t.Fatal(err)
		}
		for _, e := range res.Chunk {
			types = append(types, e.Type)
			if e.Content.Body != "" {
				bodies = append(bodies, e.Content.Body)
				ids[e.Content.Body] = e.EventID
			}
		}
		if res.End == "" {
			return bodies, types, ids
		}
		from = res.End
	}
	t.Fatal("/messages never ended")
	return nil, nil, nil
}

func oldOnly(bodies []string) []string {
	var out []string
	for _, b := range bodies {
		if strings.HasPrefix(b, "old ") {
			out = append(out, b)
		}
	}
	return out
}

// A server that left a room and joined it again missed what was said
// meanwhile: a hole in the middle of its history, which paging back fills
// (Complement's "Visible shared history after re-joining room"), in order.
func TestMessagesBackfillFillsHoleAfterRejoin(t *testing.T) {
	hs := hstest.StartFederation(t, 2)
	a, b := hs[0], hs[1]
	alice := a.Register(t, "alice")
	bob := b.Register(t, "bob")
	roomID := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	a.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/first", roomID), alice.Token, map[string]any{"msgtype": "m.text", "body": "first"})
	join := "/_matrix/client/v3/join/" + url.PathEscape(roomID) + "?server_name=" + url.QueryEscape(a.ServerName)
	b.MustOK(t, "POST", join, bob.Token, map[string]any{})
	b.MustOK(t, "POST", hstest.Path("/rooms/%s/leave", roomID), bob.Token, map[string]any{})
	waitMembership(t, a, alice, roomID, bob.UserID, "leave")
	const n = 20
	for i := 0; i < n; i++ {
		a.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/%s", roomID, fmt.Sprint("m", i)), alice.Token, map[string]any{"msgtype": "m.text", "body": fmt.Sprint("while away ", i)})
	}
	b.MustOK(t, "POST", join, bob.Token, map[string]any{})

	bodies, types, _ := pageBack(t, b, bob, roomID, 10)
	var got []string
	for _, body := range bodies {
		if strings.HasPrefix(body, "while away ") || body == "first" {
			got = append(got, body)
		}
	}
	want := []string{}
	for i := n - 1; i >= 0; i-- {
		want = append(want, fmt.Sprint("while away ", i))
	}
	want = append(want, "first")
	if !slices.Equal(got, want) {
		t.Fatalf("bob's /messages after rejoining: %v, want %v", got, want)
	}
	if types[len(types)-1] != "m.room.create" {
		t.Fatalf("history does not end with the room's creation: %v", types)
	}
}

// A room whose history is for members only ("joined"): a user of another
// server who joins later pages back to the room's creation without meeting
// what was said before (his server got it redacted; it is not shown at
// all), even on pages backfilled before the history_visibility event is.
func TestMessagesBackfillJoinedVisibility(t *testing.T) {
	hs := hstest.StartFederation(t, 2)
	a, b := hs[0], hs[1]
	alice := a.Register(t, "alice")
	bob := b.Register(t, "bob")
	roomID := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	a.MustOK(t, "PUT", hstest.Path("/rooms/%s/state/m.room.history_visibility/", roomID), alice.Token, map[string]any{"history_visibility": "joined"})
	for i := 0; i < 25; i++ {
		a.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/%s", roomID, fmt.Sprint("s", i)), alice.Token, map[string]any{"msgtype": "m.text", "body": fmt.Sprint("secret ", i)})
	}
	b.MustOK(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName), bob.Token, map[string]any{})
	_, types, _ := pageBack(t, b, bob, roomID, 10)
	if slices.Contains(types, "m.room.message") {
		t.Fatalf("bob sees messages from before he joined a members-only room: %v", types)
	}
	if len(types) == 0 || types[len(types)-1] != "m.room.create" {
		t.Fatalf("history does not end with the room's creation: %v", types)
	}
	// What came before the room was for members only is there.
	for _, typ := range []string{"m.room.history_visibility", "m.room.join_rules", "m.room.power_levels"} {
		if !slices.Contains(types, typ) {
			t.Fatalf("bob does not see the room's %s: %v", typ, types)
		}
	}
}
