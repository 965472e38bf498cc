package fedtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"testing"
	"time"

	"conclave/internal/homeserver/hstest"
	"conclave/internal/store"
)

// A server that missed more of a room than /get_missing_events reaches
// (its peer dropped what it had queued for it, as a server in Synapse's
// catch-up mode sends only the latest event) takes the next event all the
// same: it asks the state at the events it still lacks (/state_ids, /event)
// and accepts the event with that state — the topic changed and the member
// who joined while it was away are there.
func TestGapBeyondMissingEventsFilledWithState(t *testing.T) {
	hs := hstest.StartFederation(t, 2)
	a, b := hs[0], hs[1]
	alice := a.Register(t, "alice")
	charlie := a.Register(t, "charlie")
	bob := b.Register(t, "bob")
	roomID := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	b.MustOK(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName), bob.Token, map[string]any{})
	a.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/before", roomID), alice.Token, map[string]any{"msgtype": "m.text", "body": "before"})
	waitBody(t, b, bob, roomID, "before")

	b.Stop()
	// While bob's server is away: a new topic and a new member, then more
	// messages than one /get_missing_events answers (20).
	a.MustOK(t, "PUT", hstest.Path("/rooms/%s/state/m.room.topic/", roomID), alice.Token, map[string]any{"topic": "decided while you were away"})
	a.MustOK(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID), charlie.Token, map[string]any{})
	const n = 30
	for i := 0; i < n; i++ {
		a.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/%s", roomID, fmt.Sprint("gap", i)), alice.Token, map[string]any{"msgtype": "m.text", "body": fmt.Sprint("gap ", i)})
	}
	// Alice's server forgets what it had queued for bob's.
	dropQueued(t, a, b.ServerName)
	b = b.Restart(t)
	a.HS.FedSender.Wake(b.ServerName)
	a.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/after", roomID), alice.Token, map[string]any{"msgtype": "m.text", "body": "after"})

	waitBody(t, b, bob, roomID, "after")
	// The last messages of the gap came with /get_missing_events.
	waitBodies(t, b, bob, roomID, "gap 2", 10, 10*time.Second)
	topic := b.MustOK(t, "GET", hstest.Path("/rooms/%s/state/m.room.topic/", roomID), bob.Token, nil)
	if !contains(topic.Body, "decided while you were away") {
		t.Fatalf("topic on bob's server: %s", topic.Body)
	}
	var members struct {
		Joined map[string]json.RawMessage `json:"joined"`
	}
	json.Unmarshal(b.MustOK(t, "GET", hstest.Path("/rooms/%s/joined_members", roomID), bob.Token, nil).Body, &members)
	if _, ok := members.Joined[charlie.UserID]; !ok {
		t.Fatalf("charlie, who joined while bob's server was away, is not a member there: %v", members.Joined)
	}
	// And bob's next message is built on the event after the gap, which
	// alice's server takes.
	b.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/reply", roomID), bob.Token, map[string]any{"msgtype": "m.text", "body": "reply"})
	waitBody(t, a, alice, roomID, "reply")
}

// dropQueued makes s forget what it had queued for dest (marked delivered),
// as a server in Synapse's catch-up mode sends only the latest event.
func dropQueued(t *testing.T, s *hstest.Server, dest string) {
	t.Helper()
	ctx := context.Background()
	for {
		batch, err := s.HS.Store.FedNextBatch(ctx, dest, 50, 100)
		if err != nil {
			t.Fatal(err)
		}
		if batch.Empty() {
			return
		}
		done := store.FedDone{Destination: dest}
		for _, e := range batch.PDUs {
			done.PDUs = append(done.PDUs, e.ID)
		}
		for _, e := range batch.EDUs {
			done.EDUs = append(done.EDUs, e.ID)
		}
		if err := s.HS.Store.FedDelivered(ctx, []store.FedDone{done}, time.Now().UnixMilli()); err != nil {
			t.Fatal(err)
		}
	}
}

// waitBody waits until u's server has a message with this body in the room.
func waitBody(t *testing.T, s *hstest.Server, u *hstest.User, roomID, text string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := s.MustOK(t, "GET", hstest.Path("/rooms/%s/messages", roomID)+"?dir=b&limit=50", u.Token, nil)
		if contains(r.Body, `"body":"`+text+`"`) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's server never had %q: %s", u.UserID, text, r.Body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
