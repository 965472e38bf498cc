package clientapi_test

import (
	"encoding/json"
	"testing"

	"conclave/internal/homeserver/hstest"
)

func TestFilters(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	post := hstest.Path("/user/%s/filter", alice.UserID)
	f := map[string]any{
		"event_fields": []string{"type", "content.body"},
		"room": map[string]any{
			"rooms":    []string{"!a:localhost"},
			"timeline": map[string]any{"limit": 20, "types": []string{"m.room.*"}, "not_senders": []string{"@spam:localhost"}},
			"state":    map[string]any{"lazy_load_members": true, "types": []string{}},
		},
		"presence":  map[string]any{"not_types": []string{"*"}},
		"x.unknown": true,
	}
	r := s.MustOK(t, "POST", post, alice.Token, f)
	if r.Str("filter_id") != "0" {
		t.Fatalf("first filter: %s", r.Body)
	}
	r = s.MustOK(t, "POST", post, alice.Token, map[string]any{})
	if r.Str("filter_id") != "1" {
		t.Fatalf("second filter: %s", r.Body)
	}
	r = s.MustOK(t, "GET", hstest.Path("/user/%s/filter/%s", alice.UserID, "0"), alice.Token, nil)
	room := r.JSON["room"].(map[string]any)
	tl := room["timeline"].(map[string]any)
	if tl["limit"] != float64(20) || room["state"].(map[string]any)["lazy_load_members"] != true {
		t.Fatalf("stored filter: %s", r.Body)
	}
	// An empty types list stays empty (it means "nothing"), not absent.
	if types, ok := room["state"].(map[string]any)["types"].([]any); !ok || len(types) != 0 {
		t.Fatalf("empty list lost: %s", r.Body)
	}
	var back map[string]any
	json.Unmarshal(r.Body, &back)
	if _, ok := back["x.unknown"]; ok {
		t.Fatalf("unknown key kept: %s", r.Body)
	}

	expectErr(t, s.Do(t, "POST", post, bob.Token, map[string]any{}), 403, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "GET", hstest.Path("/user/%s/filter/%s", alice.UserID, "0"), bob.Token, nil), 403, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "GET", hstest.Path("/user/%s/filter/%s", bob.UserID, "0"), bob.Token, nil), 404, "M_NOT_FOUND")
	expectErr(t, s.Do(t, "GET", hstest.Path("/user/%s/filter/%s", alice.UserID, "99"), alice.Token, nil), 404, "M_NOT_FOUND")
	expectErr(t, s.Do(t, "GET", hstest.Path("/user/%s/filter/%s", alice.UserID, "abc"), alice.Token, nil), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "GET", hstest.Path("/user/%s/filter/%s", alice.UserID, "-1"), alice.Token, nil), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "POST", post, "", map[string]any{}), 401, "M_MISSING_TOKEN")
	expectErr(t, s.Do(t, "POST", post, alice.Token, `{"room":`), 400, "M_NOT_JSON")
	expectErr(t, s.Do(t, "POST", post, alice.Token, `[]`), 400, "M_BAD_JSON")
	for _, bad := range []string{
		`{"room": []}`,
		`{"room": {"timeline": {"limit": "10"}}}`,
		`{"room": {"timeline": {"limit": -1}}}`,
		`{"room": {"timeline": {"limit": 1.5}}}`,
		`{"room": {"rooms": ["not-a-room"]}}`,
		`{"room": {"state": {"lazy_load_members": "yes"}}}`,
		`{"presence": {"senders": ["nobody"]}}`,
		`{"presence": {"types": [1]}}`,
		`{"event_format": "xml"}`,
		`{"account_data": {"not_types": "m.x"}}`,
	} {
		expectErr(t, s.Do(t, "POST", post, alice.Token, bad), 400, "M_BAD_JSON")
	}
	// Still only two filters.
	expectErr(t, s.Do(t, "GET", hstest.Path("/user/%s/filter/%s", alice.UserID, "2"), alice.Token, nil), 404, "M_NOT_FOUND")
}
