package clientapi_test

import (
	"strings"
	"testing"

	"conclave/internal/homeserver/hstest"
)

// A new member's presence reaches existing members in their next
// incremental sync, and set_presence=unavailable on /sync is reported.
func TestPresenceThroughSync(t *testing.T) {
	s := hstest.Start(t)
	alice, bob := s.CreateUser(t, "alice"), s.CreateUser(t, "bob")
	roomID := createRoom(t, s, alice, map[string]any{"preset": "public_chat"})
	since := s.MustOK(t, "GET", "/_matrix/client/v3/sync?timeout=0", alice.Token, nil).Str("next_batch")
	s.MustOK(t, "POST", hstest.Path("/join/%s", roomID), bob.Token, "{}")
	r := s.MustOK(t, "GET", "/_matrix/client/v3/sync?timeout=0&since="+since, alice.Token, nil)
	if !strings.Contains(string(r.Body), `"sender":"`+bob.UserID+`","type":"m.presence"`) && !strings.Contains(string(r.Body), `"type":"m.presence","sender":"`+bob.UserID+`"`) {
		t.Fatalf("no presence for the new member: %s", r.Body)
	}
	since = r.Str("next_batch")
	s.MustOK(t, "GET", "/_matrix/client/v3/sync?timeout=0&set_presence=unavailable", bob.Token, nil)
	r = s.MustOK(t, "GET", "/_matrix/client/v3/sync?timeout=0&since="+since, alice.Token, nil)
	if !strings.Contains(string(r.Body), `"presence":"unavailable"`) {
		t.Fatalf("set_presence not reported: %s", r.Body)
	}
}
