package clientapi_test

import (
	"net/url"
	"testing"

	"conclave/internal/homeserver/hstest"
)

// unsigned.membership (spec v1.11) in /sync: the syncing user's membership at
// each event — from the membership history when the timeline reaches back
// before their latest membership change, and the current membership on the
// incremental fast path.
func TestSyncUnsignedMembership(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	roomID := s.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	send := func(token, txn, body string) string {
		return s.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/%s", roomID, txn), token, map[string]any{"msgtype": "m.text", "body": body}).Str("event_id")
	}
	before := send(alice.Token, "1", "before bob")
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/invite", roomID), alice.Token, map[string]any{"user_id": bob.UserID})
	invited := send(alice.Token, "1b", "while bob is invited")
	s.MustOK(t, "POST", hstest.Path("/join/%s", roomID), bob.Token, map[string]any{})
	after := send(alice.Token, "2", "after bob joined")

	memberships := func(res *hstest.Response) map[string]string {
		out := map[string]string{}
		rooms, _ := res.JSON["rooms"].(map[string]any)
		join, _ := rooms["join"].(map[string]any)
		r, _ := join[roomID].(map[string]any)
		tl, _ := r["timeline"].(map[string]any)
		evs, _ := tl["events"].([]any)
		for _, e := range evs {
			ev := e.(map[string]any)
			u, _ := ev["unsigned"].(map[string]any)
			m, _ := u["membership"].(string)
			out[ev["event_id"].(string)] = m
		}
		return out
	}
	initial := s.MustOK(t, "GET", "/_matrix/client/v3/sync", bob.Token, nil)
	got := memberships(initial)
	if got[before] != "leave" || got[invited] != "invite" || got[after] != "join" {
		t.Fatalf("initial sync memberships: before=%q invited=%q after=%q, want leave/invite/join (%v)", got[before], got[invited], got[after], got)
	}
	since := initial.Str("next_batch")
	later := send(alice.Token, "3", "later")
	inc := s.MustOK(t, "GET", "/_matrix/client/v3/sync?since="+url.QueryEscape(since), bob.Token, nil)
	if m := memberships(inc)[later]; m != "join" {
		t.Fatalf("incremental sync membership %q, want join", m)
	}
	// After bob leaves, alice's next message reaches him only as part of
	// the leave; his own leave event shows membership leave.
	since = inc.Str("next_batch")
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/leave", roomID), bob.Token, map[string]any{})
	inc = s.MustOK(t, "GET", "/_matrix/client/v3/sync?since="+url.QueryEscape(since), alice.Token, nil)
	for id, m := range memberships(inc) {
		if m != "join" {
			t.Fatalf("alice's membership at %s: %q, want join", id, m)
		}
	}
}
