package retention_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"conclave/internal/fedclient"
	"conclave/internal/homeserver/hstest"
)

// A room purged on its only server: another server joins it afterwards,
// pages back (backfill) without an error and without meeting purged
// content, asks for purged events directly (/event: 404; /backfill and
// /get_missing_events: never given), and the room goes on across both.
func TestRetentionAcrossServers(t *testing.T) {
	hs := hstest.StartFederation(t, 2, withRetention)
	a, b := hs[0], hs[1]
	alice := a.Register(t, "alice")
	bob := b.Register(t, "bob")
	roomID := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{
		"preset":        "public_chat",
		"initial_state": []any{map[string]any{"type": "m.room.retention", "state_key": "", "content": map[string]any{"max_lifetime": 3600_000}}},
	}).Str("room_id")
	var purged []string
	for i := 0; i < 12; i++ {
		purged = append(purged, send(t, a, alice, roomID, fmt.Sprint("old", i), text(fmt.Sprint("phoenix old ", i))))
	}
	last := send(t, a, alice, roomID, "last", text("phoenix last"))
	res, err := a.HS.Retention.RunAt(context.Background(), time.Now().Add(time.Hour+time.Minute))
	if err != nil || res.Purged != 12 {
		t.Fatalf("purge on a: %+v %v", res, err)
	}

	// Bob's server joins after the purge and pages back.
	b.MustOK(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName), bob.Token, map[string]any{})
	evs := messages(t, b, bob, roomID)
	for _, e := range evs {
		if strings.Contains(string(e.Content), "phoenix old") {
			t.Fatalf("b's /messages shows a purged event: %s", e.Content)
		}
	}
	if got := strings.Join(bodies(evs), "|"); got != "phoenix last" {
		t.Fatalf("b's /messages: %q, want the last message only", got)
	}

	// Asked directly, a gives no purged event.
	fc := b.HS.FedClient
	ctx := context.Background()
	_, err = fc.GetEvent(ctx, a.ServerName, purged[3])
	var he *fedclient.Error
	if !errors.As(err, &he) || he.Status != 404 {
		t.Fatalf("/event of a purged event: %v", err)
	}
	txn, err := fc.Backfill(ctx, a.ServerName, roomID, []string{last, purged[11]}, 20)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range txn.PDUs {
		if strings.Contains(string(p), "phoenix old") || strings.Contains(string(p), `"m.room.message","content":{}`) {
			t.Fatalf("/backfill gives a purged event: %s", p)
		}
	}
	if len(txn.PDUs) != 1 || !strings.Contains(string(txn.PDUs[0]), "phoenix last") {
		t.Fatalf("/backfill from the last message: %d events", len(txn.PDUs))
	}
	missing, err := fc.GetMissingEvents(ctx, a.ServerName, roomID, fedclient.MissingEventsRequest{EarliestEvents: []string{purged[0]}, LatestEvents: []string{last}, Limit: 20})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range missing {
		if strings.Contains(string(p), "phoenix old") {
			t.Fatalf("/get_missing_events gives a purged event: %s", p)
		}
	}

	// The room goes on both ways.
	send(t, a, alice, roomID, "new", text("alice after"))
	send(t, b, bob, roomID, "new", text("bob after"))
	waitBody(t, b, bob, "alice after")
	waitBody(t, a, alice, "bob after")

	// Bob's server purges too, backfilled history included: its /messages
	// ends without fetching the purged events again, and the room goes on.
	res, err = b.HS.Retention.RunAt(ctx, time.Now().Add(time.Hour+time.Minute))
	// (the two messages sent at once on both servers may both be forward
	// extremities here: they are kept)
	if err != nil || res.Purged < 1 {
		t.Fatalf("purge on b: %+v %v", res, err)
	}
	for _, body := range bodies(messages(t, b, bob, roomID)) {
		if body == "phoenix last" {
			t.Fatal("b's /messages after its own purge shows the purged backfilled event")
		}
	}
	send(t, a, alice, roomID, "newer", text("alice later"))
	waitBody(t, b, bob, "alice later")
	if got := bodies(messages(t, b, bob, roomID)); len(got) == 0 || got[0] != "alice later" || len(got) > 3 {
		t.Fatalf("b's /messages after a new message: %v", got)
	}
}

// waitBody long-polls u's /sync until a timeline event with body arrives.
func waitBody(t *testing.T, s *hstest.Server, u *hstest.User, body string) {
	t.Helper()
	since := ""
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		q := "/_matrix/client/v3/sync?timeout=2000"
		if since != "" {
			q += "&since=" + url.QueryEscape(since)
		}
		r := s.MustOK(t, "GET", q, u.Token, nil)
		var res struct {
			NextBatch string `json:"next_batch"`
			Rooms     struct {
				Join map[string]struct {
					Timeline struct {
						Events []clientEvent `json:"events"`
					} `json:"timeline"`
				} `json:"join"`
			} `json:"rooms"`
		}
		if err := json.Unmarshal(r.Body, &res); err != nil {
			t.Fatal(err)
		}
		for _, room := range res.Rooms.Join {
			for _, e := range room.Timeline.Events {
				if e.body() == body {
					return
				}
			}
		}
		since = res.NextBatch
	}
	t.Fatalf("%s never saw %q", u.UserID, body)
}
