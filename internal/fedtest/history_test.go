package fedtest

import (
	"context"
	"encoding/json"
	"net/url"
	"testing"

	"conclave/internal/fedclient"
	"conclave/internal/homeserver/hstest"
)

type pduView struct {
	Type     string          `json:"type"`
	StateKey *string         `json:"state_key"`
	Content  json.RawMessage `json:"content"`
}

func viewPDUs(t *testing.T, raws []json.RawMessage) []pduView {
	t.Helper()
	out := make([]pduView, len(raws))
	for i, r := range raws {
		if err := json.Unmarshal(r, &out[i]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// stateIDs reads a room's current state event IDs through u's client API,
// keyed "type|state_key".
func stateIDs(t *testing.T, s *hstest.Server, u *hstest.User, roomID string) map[string]string {
	t.Helper()
	r := s.MustOK(t, "GET", hstest.Path("/rooms/%s/state", roomID), u.Token, nil)
	var evs []struct {
		Type     string `json:"type"`
		StateKey string `json:"state_key"`
		EventID  string `json:"event_id"`
	}
	json.Unmarshal(r.Body, &evs)
	m := map[string]string{}
	for _, e := range evs {
		m[e.Type+"|"+e.StateKey] = e.EventID
	}
	return m
}

// History served to another server follows the history visibility at each
// event (Complement's TestInboundCanReturnMissingEvents): with "joined" or
// "invited", what was sent before the server's first user joined goes out
// redacted through /get_missing_events, /backfill and /event; with
// "shared" and "world_readable" as it is. A public_chat room's first events
// are the ones Synapse sends (no m.room.guest_access).
func TestHistoryServedByVisibilityAtEachEvent(t *testing.T) {
	hs := hstest.StartFederation(t, 2)
	a, b := hs[0], hs[1]
	alice := a.Register(t, "alice")
	bob := b.Register(t, "bob")
	ctx := context.Background()
	for _, vis := range []string{"world_readable", "shared", "invited", "joined"} {
		t.Run(vis, func(t *testing.T) {
			roomID := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
			a.MustOK(t, "PUT", hstest.Path("/rooms/%s/state/m.room.history_visibility/", roomID), alice.Token, map[string]any{"history_visibility": vis})
			msg := a.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/m1", roomID), alice.Token, map[string]any{"msgtype": "m.text", "body": "1"}).Str("event_id")
			b.MustOK(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName), bob.Token, map[string]any{})
			st := stateIDs(t, a, alice, roomID)
			create, join := st["m.room.create|"], st["m.room.member|"+bob.UserID]
			if join == "" {
				t.Fatalf("bob's join not in alice's server's state: %v", st)
			}
			hidden := vis == "joined" || vis == "invited"
			checkMsg := func(where string, p pduView) {
				t.Helper()
				var c map[string]any
				json.Unmarshal(p.Content, &c)
				if p.Type != "m.room.message" {
					t.Fatalf("%s: %s where the message was expected", where, p.Type)
				}
				if hidden != (c["body"] == nil) {
					t.Fatalf("%s with %s visibility: content %s", where, vis, p.Content)
				}
			}

			raws, err := b.HS.FedClient.GetMissingEvents(ctx, a.ServerName, roomID, fedclient.MissingEventsRequest{
				EarliestEvents: []string{create}, LatestEvents: []string{join}, Limit: 10, MinDepth: 1})
			if err != nil {
				t.Fatal(err)
			}
			evs := viewPDUs(t, raws)
			want := []string{"m.room.member", "m.room.power_levels", "m.room.join_rules", "m.room.history_visibility"}
			if vis != "shared" { // shared again changes nothing: no event
				want = append(want, "m.room.history_visibility")
			}
			want = append(want, "m.room.message")
			if len(evs) != len(want) {
				t.Fatalf("get_missing_events: %d events, want %d: %s", len(evs), len(want), raws)
			}
			for i, typ := range want {
				if evs[i].Type != typ {
					t.Fatalf("get_missing_events event %d is %s, want %s", i, evs[i].Type, typ)
				}
			}
			checkMsg("get_missing_events", evs[len(evs)-1])

			tx, err := b.HS.FedClient.Backfill(ctx, a.ServerName, roomID, []string{join}, 3)
			if err != nil {
				t.Fatal(err)
			}
			bf := viewPDUs(t, tx.PDUs)
			if len(bf) != 3 || bf[0].Type != "m.room.member" {
				t.Fatalf("backfill: %s", tx.PDUs)
			}
			checkMsg("backfill", bf[1])
			var hvc map[string]any
			json.Unmarshal(bf[2].Content, &hvc)
			if bf[2].Type != "m.room.history_visibility" || hvc["history_visibility"] != vis {
				t.Fatalf("backfill: the history_visibility event (kept by redaction) is %s %s", bf[2].Type, bf[2].Content)
			}

			tx, err = b.HS.FedClient.GetEvent(ctx, a.ServerName, msg)
			if err != nil {
				t.Fatal(err)
			}
			ev := viewPDUs(t, tx.PDUs)
			if len(ev) != 1 {
				t.Fatalf("/event: %s", tx.PDUs)
			}
			checkMsg("/event", ev[0])

			// What is sent once bob is in is visible to his server whatever
			// the visibility.
			after := a.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/m2", roomID), alice.Token, map[string]any{"msgtype": "m.text", "body": "2"}).Str("event_id")
			tx, err = b.HS.FedClient.GetEvent(ctx, a.ServerName, after)
			if err != nil {
				t.Fatal(err)
			}
			if ev := viewPDUs(t, tx.PDUs); len(ev) != 1 || !contains(ev[0].Content, `"2"`) {
				t.Fatalf("/event after the join: %s", tx.PDUs)
			}
		})
	}
}
