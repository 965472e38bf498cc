package clientapi_test

import (
	"net/http"
	"strings"
	"testing"

	"conclave/internal/homeserver/hstest"
)

func TestAccountData(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	global := hstest.Path("/user/%s/account_data/%s", alice.UserID, "org.example.settings")
	room := hstest.Path("/user/%s/rooms/%s/account_data/%s", alice.UserID, "!r:localhost", "org.example.settings")

	expectErr(t, s.Do(t, "GET", global, alice.Token, nil), 404, "M_NOT_FOUND")
	s.MustOK(t, "PUT", global, alice.Token, map[string]any{"a": 1})
	s.MustOK(t, "PUT", room, alice.Token, map[string]any{"b": 2})
	r := s.MustOK(t, "GET", global, alice.Token, nil)
	if r.JSON["a"] != float64(1) || len(r.JSON) != 1 {
		t.Fatalf("global: %s", r.Body)
	}
	r = s.MustOK(t, "GET", room, alice.Token, nil)
	if r.JSON["b"] != float64(2) || len(r.JSON) != 1 {
		t.Fatalf("room: %s", r.Body)
	}
	// Overwrite.
	s.MustOK(t, "PUT", global, alice.Token, map[string]any{"a": 3})
	if r = s.MustOK(t, "GET", global, alice.Token, nil); r.JSON["a"] != float64(3) {
		t.Fatalf("overwrite: %s", r.Body)
	}
	// Room data is separate per room.
	expectErr(t, s.Do(t, "GET", hstest.Path("/user/%s/rooms/%s/account_data/%s", alice.UserID, "!other:localhost", "org.example.settings"), alice.Token, nil), 404, "M_NOT_FOUND")
	// m.push_rules may be set per room (only the global one is the server's).
	s.MustOK(t, "PUT", hstest.Path("/user/%s/rooms/%s/account_data/%s", alice.UserID, "!r:localhost", "m.push_rules"), alice.Token, map[string]any{})

	// Errors.
	expectErr(t, s.Do(t, "GET", global, bob.Token, nil), 403, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "PUT", global, bob.Token, map[string]any{}), 403, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "PUT", room, bob.Token, map[string]any{}), 403, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "GET", global, "", nil), 401, "M_MISSING_TOKEN")
	expectErr(t, s.Do(t, "PUT", hstest.Path("/user/%s/account_data/%s", alice.UserID, "m.push_rules"), alice.Token, map[string]any{}), 405, "M_BAD_JSON")
	expectErr(t, s.Do(t, "PUT", hstest.Path("/user/%s/rooms/%s/account_data/%s", alice.UserID, "!r:localhost", "m.fully_read"), alice.Token, map[string]any{"event_id": "$x"}), 405, "M_BAD_JSON")
	expectErr(t, s.Do(t, "PUT", hstest.Path("/user/%s/rooms/%s/account_data/%s", alice.UserID, "not-a-room", "t"), alice.Token, map[string]any{}), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "GET", hstest.Path("/user/%s/rooms/%s/account_data/%s", alice.UserID, "not-a-room", "t"), alice.Token, nil), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "PUT", hstest.Path("/user/%s/account_data/%s", alice.UserID, strings.Repeat("t", 256)), alice.Token, map[string]any{}), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "PUT", global, alice.Token, `[1,2]`), 400, "M_BAD_JSON")
	expectErr(t, s.Do(t, "PUT", global, alice.Token, `"str"`), 400, "M_BAD_JSON")
	expectErr(t, s.Do(t, "PUT", global, alice.Token, `{"a":`), 400, "M_NOT_JSON")
	expectErr(t, s.Do(t, "PUT", global, alice.Token, ""), 400, "M_NOT_JSON")
	big := `{"a":"` + strings.Repeat("x", 64<<10) + `"}`
	expectErr(t, s.Do(t, "PUT", global, alice.Token, big), http.StatusRequestEntityTooLarge, "M_TOO_LARGE")
	// Nothing of the failures was stored.
	if r = s.MustOK(t, "GET", global, alice.Token, nil); r.JSON["a"] != float64(3) {
		t.Fatalf("after failures: %s", r.Body)
	}
	expectErr(t, s.Do(t, "GET", hstest.Path("/user/%s/account_data/%s", alice.UserID, "m.push_rules"), alice.Token, nil), 404, "M_NOT_FOUND")
}
