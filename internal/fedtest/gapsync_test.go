package fedtest

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"conclave/internal/homeserver/hstest"
)

// A client is told of a hole in its server's history and can page through
// it: after its server caught up past what /get_missing_events reaches
// (taking the rest with the state at the missing events), the incremental
// sync's timeline that brings the events after the hole is limited — not
// shown as following what the client had — and paging back from it
// backfills every message of the hole (Complement's TestSyncTimelineGap).
func TestSyncTimelineGapThenBackfill(t *testing.T) {
	hs := hstest.StartFederation(t, 2)
	a, b := hs[0], hs[1]
	alice := a.Register(t, "alice")
	bob := b.Register(t, "bob")
	roomID := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	b.MustOK(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName), bob.Token, map[string]any{})
	a.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/before", roomID), alice.Token, map[string]any{"msgtype": "m.text", "body": "before"})
	waitBody(t, b, bob, roomID, "before")
	since := b.MustOK(t, "GET", "/_matrix/client/v3/sync", bob.Token, nil).Str("next_batch")

	b.Stop()
	const n = 40
	for i := 0; i < n; i++ {
		a.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/%s", roomID, fmt.Sprint("gap", i)), alice.Token, map[string]any{"msgtype": "m.text", "body": fmt.Sprint("gap ", i)})
	}
	// Alice's server forgets what it had queued for bob's.
	dropQueued(t, a, b.ServerName)
	b = b.Restart(t)
	a.HS.FedSender.Wake(b.ServerName)
	a.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/after", roomID), alice.Token, map[string]any{"msgtype": "m.text", "body": "after"})

	type batch struct {
		Limited   bool   `json:"limited"`
		PrevBatch string `json:"prev_batch"`
		Events    []struct {
			Content struct {
				Body string `json:"body"`
			} `json:"content"`
		} `json:"events"`
	}
	// Every limited timeline: its prev_batch is where the client pages
	// back from. The first one after the hole must be limited; under load,
	// the events after the hole arrive over several syncs, and a later one
	// may be limited too (more events since the last sync than its limit).
	var limited []string
	seen := map[string]bool{}
	deadline := time.Now().Add(30 * time.Second)
	for !seen["after"] {
		if time.Now().After(deadline) {
			t.Fatalf("bob's sync never brought the message after the hole")
		}
		r := b.MustOK(t, "GET", "/_matrix/client/v3/sync?timeout=5000&since="+url.QueryEscape(since), bob.Token, nil)
		var s struct {
			NextBatch string `json:"next_batch"`
			Rooms     struct {
				Join map[string]struct {
					Timeline batch `json:"timeline"`
				} `json:"join"`
			} `json:"rooms"`
		}
		json.Unmarshal(r.Body, &s)
		since = s.NextBatch
		tl := s.Rooms.Join[roomID].Timeline
		if len(tl.Events) == 0 {
			continue
		}
		if limited == nil && !tl.Limited {
			t.Fatalf("the first timeline after the hole is not limited: %s", r.Body)
		}
		if tl.Limited {
			limited = append(limited, tl.PrevBatch)
		}
		for _, e := range tl.Events {
			seen[e.Content.Body] = true
		}
	}
	if len(seen) >= n+1 {
		t.Fatalf("the hole was not a hole: sync brought %d messages", len(seen))
	}
	// Paging back from each limited timeline, as a client fills each gap
	// its sync left, backfills the hole.
	for _, from := range limited {
		pageBackToBefore(t, b, bob, roomID, from, seen)
	}
	var missing []string
	for i := 0; i < n; i++ {
		if b := fmt.Sprint("gap ", i); !seen[b] {
			missing = append(missing, b)
		}
	}
	if len(missing) > 0 || !seen["before"] {
		t.Fatalf("paging back through the hole missed %s (before: %v)", strings.Join(missing, ", "), seen["before"])
	}
}

// pageBackToBefore pages /messages backwards from from until the message "before"
// (the last one before the hole), marking the bodies seen.
func pageBackToBefore(t *testing.T, b *hstest.Server, bob *hstest.User, roomID, from string, seen map[string]bool) {
	t.Helper()
	for page := 0; page < 20 && from != ""; page++ {
		r := b.MustOK(t, "GET", hstest.Path("/rooms/%s/messages", roomID)+"?dir=b&limit=10&from="+url.QueryEscape(from), bob.Token, nil)
		var p struct {
			Chunk []struct {
				Content struct {
					Body string `json:"body"`
				} `json:"content"`
			} `json:"chunk"`
			End string `json:"end"`
		}
		json.Unmarshal(r.Body, &p)
		for _, e := range p.Chunk {
			seen[e.Content.Body] = true
		}
		for _, e := range p.Chunk {
			if e.Content.Body == "before" {
				return
			}
		}
		from = p.End
	}
}
