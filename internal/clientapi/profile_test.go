package clientapi_test

import (
	"net/http"
	"strings"
	"testing"

	"conclave/internal/homeserver/hstest"
)

func TestProfile(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	dn := hstest.Path("/profile/%s/displayname", alice.UserID)
	av := hstest.Path("/profile/%s/avatar_url", alice.UserID)

	// A user without a profile yet: empty answers, not 404.
	r := s.MustOK(t, "GET", hstest.Path("/profile/%s", alice.UserID), "", nil)
	if len(r.JSON) != 0 {
		t.Fatalf("empty profile: %s", r.Body)
	}
	r = s.MustOK(t, "GET", dn, "", nil)
	if len(r.JSON) != 0 {
		t.Fatalf("empty displayname: %s", r.Body)
	}

	s.MustOK(t, "PUT", dn, alice.Token, map[string]any{"displayname": "Alice A"})
	s.MustOK(t, "PUT", av, alice.Token, map[string]any{"avatar_url": "mxc://localhost/abc"})
	r = s.MustOK(t, "GET", dn, "", nil)
	if r.Str("displayname") != "Alice A" {
		t.Fatalf("displayname: %s", r.Body)
	}
	r = s.MustOK(t, "GET", av, bob.Token, nil)
	if r.Str("avatar_url") != "mxc://localhost/abc" {
		t.Fatalf("avatar_url: %s", r.Body)
	}
	r = s.MustOK(t, "GET", hstest.Path("/profile/%s", alice.UserID), "", nil)
	if r.Str("displayname") != "Alice A" || r.Str("avatar_url") != "mxc://localhost/abc" {
		t.Fatalf("profile: %s", r.Body)
	}
	// Clearing with "".
	s.MustOK(t, "PUT", av, alice.Token, map[string]any{"avatar_url": ""})
	r = s.MustOK(t, "GET", hstest.Path("/profile/%s", alice.UserID), "", nil)
	if _, ok := r.JSON["avatar_url"]; ok {
		t.Fatalf("cleared avatar still there: %s", r.Body)
	}
	// Exactly 256 characters (multi-byte) is fine.
	s.MustOK(t, "PUT", dn, alice.Token, map[string]any{"displayname": strings.Repeat("é", 256)})
	// r0 prefix works too.
	s.MustOK(t, "GET", "/_matrix/client/r0/profile/"+alice.UserID, "", nil)
}

func TestProfileErrors(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	dn := hstest.Path("/profile/%s/displayname", alice.UserID)
	av := hstest.Path("/profile/%s/avatar_url", alice.UserID)

	expectErr(t, s.Do(t, "GET", hstest.Path("/profile/%s", "@nobody:localhost"), "", nil), 404, "M_NOT_FOUND")
	expectErr(t, s.Do(t, "GET", hstest.Path("/profile/%s/displayname", "@nobody:localhost"), "", nil), 404, "M_NOT_FOUND")
	expectErr(t, s.Do(t, "GET", hstest.Path("/profile/%s/avatar_url", "@alice:elsewhere.example"), "", nil), 404, "M_NOT_FOUND")
	expectErr(t, s.Do(t, "GET", hstest.Path("/profile/%s", "not-a-user"), "", nil), 400, "M_INVALID_PARAM")

	expectErr(t, s.Do(t, "PUT", dn, "", map[string]any{"displayname": "x"}), 401, "M_MISSING_TOKEN")
	expectErr(t, s.Do(t, "PUT", dn, bob.Token, map[string]any{"displayname": "x"}), 403, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "PUT", av, bob.Token, map[string]any{"avatar_url": "mxc://a/b"}), 403, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "PUT", dn, alice.Token, map[string]any{}), 400, "M_MISSING_PARAM")
	expectErr(t, s.Do(t, "PUT", av, alice.Token, map[string]any{"displayname": "x"}), 400, "M_MISSING_PARAM")
	expectErr(t, s.Do(t, "PUT", dn, alice.Token, map[string]any{"displayname": 5}), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "PUT", dn, alice.Token, `{"displayname": null}`), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "PUT", av, alice.Token, map[string]any{"avatar_url": []string{"x"}}), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "PUT", dn, alice.Token, map[string]any{"displayname": strings.Repeat("a", 257)}), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "PUT", av, alice.Token, map[string]any{"avatar_url": "mxc://a/" + strings.Repeat("a", 1000)}), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "PUT", dn, alice.Token, `{"displayname":`), 400, "M_NOT_JSON")
	expectErr(t, s.Do(t, "PUT", dn, alice.Token, `["x"]`), 400, "M_BAD_JSON")
	big := `{"displayname":"` + strings.Repeat("a", 2<<20) + `"}`
	expectErr(t, s.Do(t, "PUT", dn, alice.Token, big), http.StatusRequestEntityTooLarge, "M_TOO_LARGE")
	// Nothing of the failed writes stuck.
	r := s.MustOK(t, "GET", dn, "", nil)
	if len(r.JSON) != 0 {
		t.Fatalf("failed writes changed the profile: %s", r.Body)
	}
}

func TestUserDirectory(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	carol := s.CreateUser(t, "carol")
	dave := s.CreateUser(t, "dave")
	erin := s.CreateUser(t, "erin")
	makeRoom(t, s, false, map[string]string{alice.UserID: "join", bob.UserID: "join"})
	makeRoom(t, s, true, map[string]string{carol.UserID: "join"})
	makeRoom(t, s, false, map[string]string{dave.UserID: "join", erin.UserID: "leave"})
	s.MustOK(t, "PUT", hstest.Path("/profile/%s/displayname", bob.UserID), bob.Token, map[string]any{"displayname": "Bobby 100%_Tables"})
	s.MustOK(t, "PUT", hstest.Path("/profile/%s/displayname", dave.UserID), dave.Token, map[string]any{"displayname": "Bobby Hidden"})
	search := hstest.Path("/user_directory/search")

	ids := func(r *hstest.Response) []string {
		var out []string
		for _, x := range r.JSON["results"].([]any) {
			out = append(out, x.(map[string]any)["user_id"].(string))
		}
		return out
	}
	r := s.MustOK(t, "POST", search, alice.Token, map[string]any{"search_term": ""})
	if got := strings.Join(ids(r), ","); got != "@bob:localhost,@carol:localhost" || r.JSON["limited"] != false {
		t.Fatalf("visible users: %s", r.Body)
	}
	// Case-insensitive display name match; dave (shares no room) stays hidden.
	r = s.MustOK(t, "POST", search, alice.Token, map[string]any{"search_term": "bOBBY"})
	if got := strings.Join(ids(r), ","); got != "@bob:localhost" {
		t.Fatalf("display name search: %s", r.Body)
	}
	if res := r.JSON["results"].([]any)[0].(map[string]any); res["display_name"] != "Bobby 100%_Tables" {
		t.Fatalf("display_name: %s", r.Body)
	}
	// LIKE metacharacters are literal.
	r = s.MustOK(t, "POST", search, alice.Token, map[string]any{"search_term": "%_t"})
	if got := strings.Join(ids(r), ","); got != "@bob:localhost" {
		t.Fatalf("escaped search: %s", r.Body)
	}
	r = s.MustOK(t, "POST", search, alice.Token, map[string]any{"search_term": "_"})
	if len(ids(r)) != 1 {
		t.Fatalf("underscore is literal: %s", r.Body)
	}
	// Dave sees carol (public room), not alice or erin (left), nor himself.
	r = s.MustOK(t, "POST", search, dave.Token, map[string]any{"search_term": "localhost"})
	if got := strings.Join(ids(r), ","); got != "@carol:localhost" {
		t.Fatalf("dave's view: %s", r.Body)
	}
	r = s.MustOK(t, "POST", search, alice.Token, map[string]any{"search_term": "localhost", "limit": 1})
	if len(ids(r)) != 1 || r.JSON["limited"] != true {
		t.Fatalf("limit: %s", r.Body)
	}

	expectErr(t, s.Do(t, "POST", search, "", map[string]any{"search_term": "a"}), 401, "M_MISSING_TOKEN")
	expectErr(t, s.Do(t, "POST", search, alice.Token, map[string]any{}), 400, "M_MISSING_PARAM")
	expectErr(t, s.Do(t, "POST", search, alice.Token, map[string]any{"search_term": 3}), 400, "M_BAD_JSON")
	expectErr(t, s.Do(t, "POST", search, alice.Token, map[string]any{"search_term": "a", "limit": "5"}), 400, "M_BAD_JSON")
	expectErr(t, s.Do(t, "POST", search, alice.Token, map[string]any{"search_term": "a", "limit": 0}), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "POST", search, alice.Token, map[string]any{"search_term": strings.Repeat("a", 1025)}), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "POST", search, alice.Token, "nope"), 400, "M_NOT_JSON")
}
