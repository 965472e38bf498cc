package fedtest

import (
	"encoding/json"
	"fmt"
	"net/url"
	"testing"
	"time"

	"conclave/internal/homeserver/hstest"
)

// A server that was down catches up: what was queued for it while it was
// away (more than one transaction's worth) arrives once it talks again, in
// order, and its own users see all of it.
func TestServerDownThenCatchesUp(t *testing.T) {
	hs := hstest.StartFederation(t, 2)
	a, b := hs[0], hs[1]
	alice := a.Register(t, "alice")
	bob := b.Register(t, "bob")
	roomID := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	b.MustOK(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName), bob.Token, map[string]any{})

	b.Stop()
	const n = 60
	for i := 0; i < n; i++ {
		a.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/%s", roomID, fmt.Sprint("away", i)), alice.Token, map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("while you were away %d", i)})
	}
	b = b.Restart(t)
	// Bob speaks: his server talks to alice's, which sends what it kept.
	b.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/back", roomID), bob.Token, map[string]any{"msgtype": "m.text", "body": "back"})
	waitBodies(t, b, bob, roomID, "while you were away ", n, 30*time.Second)
	// And alice's server took bob's message, which was built on what his
	// server had before it caught up (a fork, merged). /messages pages in
	// topological order: at its depth, before the messages he missed.
	r := a.MustOK(t, "GET", hstest.Path("/rooms/%s/messages", roomID)+"?dir=b&limit=100", alice.Token, nil)
	if !contains(r.Body, `"back"`) {
		t.Fatalf("alice's server lacks bob's message: %s", r.Body)
	}
}

// waitBodies waits until u's server has the n messages prefix+"0" …
// prefix+"n-1" in the room (read back through /messages).
func waitBodies(t *testing.T, s *hstest.Server, u *hstest.User, roomID, prefix string, n int, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		r := s.MustOK(t, "GET", hstest.Path("/rooms/%s/messages", roomID)+"?dir=b&limit=500", u.Token, nil)
		var page struct {
			Chunk []struct {
				Content struct {
					Body string `json:"body"`
				} `json:"content"`
			} `json:"chunk"`
		}
		json.Unmarshal(r.Body, &page)
		seen := map[string]bool{}
		for _, e := range page.Chunk {
			seen[e.Content.Body] = true
		}
		got := 0
		for i := 0; i < n; i++ {
			if seen[fmt.Sprint(prefix, i)] {
				got++
			}
		}
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's server has %d of the %d messages %q…", u.UserID, got, n, prefix)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
