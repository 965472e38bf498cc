package clientapi_test

import (
	"testing"

	"conclave/internal/homeserver/hstest"
)

func session(fmi, fwd int, verified bool, tag string) map[string]any {
	return map[string]any{"first_message_index": fmi, "forwarded_count": fwd, "is_verified": verified, "session_data": map[string]any{"ciphertext": tag, "ephemeral": "e", "mac": "m"}}
}

func TestKeyBackup(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	tok := alice.Token
	alg := "m.megolm_backup.v1.curve25519-aes-sha2"
	auth := map[string]any{"public_key": "abcdefg", "signatures": map[string]any{}}

	expect(t, s.Do(t, "GET", hstest.Path("/room_keys/version"), tok, nil), 404, "M_NOT_FOUND")
	expect(t, s.Do(t, "PUT", hstest.Path("/room_keys/keys/%s/%s", "!r:localhost", "S1")+"?version=1", tok, session(0, 0, false, "a")), 404, "M_NOT_FOUND")
	expect(t, s.Do(t, "POST", hstest.Path("/room_keys/version"), tok, map[string]any{"auth_data": auth}), 400, "M_MISSING_PARAM")
	expect(t, s.Do(t, "POST", hstest.Path("/room_keys/version"), tok, map[string]any{"algorithm": alg}), 400, "M_MISSING_PARAM")
	expect(t, s.Do(t, "POST", hstest.Path("/room_keys/version"), tok, map[string]any{"algorithm": alg, "auth_data": "x"}), 400, "M_BAD_JSON")

	r := s.MustOK(t, "POST", hstest.Path("/room_keys/version"), tok, map[string]any{"algorithm": alg, "auth_data": auth})
	v1 := r.Str("version")
	r = s.MustOK(t, "GET", hstest.Path("/room_keys/version"), tok, nil)
	if r.Str("version") != v1 || r.Str("algorithm") != alg || r.JSON["count"] != 0.0 || r.Str("etag") == "" || dig(r.JSON, "auth_data", "public_key") != "abcdefg" {
		t.Fatalf("current version: %s", r.Body)
	}
	etag0 := r.Str("etag")
	// Bob has no backup and cannot see alice's.
	expect(t, s.Do(t, "GET", hstest.Path("/room_keys/version/%s", v1), bob.Token, nil), 404, "M_NOT_FOUND")

	sp := func(room, sid string) string {
		return hstest.Path("/room_keys/keys/%s/%s", room, sid) + "?version=" + v1
	}
	r = s.MustOK(t, "PUT", sp("!r:localhost", "S1"), tok, session(5, 1, false, "first"))
	if r.JSON["count"] != 1.0 || r.Str("etag") == etag0 {
		t.Fatalf("after first key: %s", r.Body)
	}
	// The spec's rule: verified beats unverified, then lower
	// first_message_index, then lower forwarded_count; equal keeps the old.
	steps := []struct {
		key     map[string]any
		replace bool
	}{
		{session(5, 1, false, "same"), false},
		{session(6, 0, false, "higher index"), false},
		{session(5, 2, false, "more forwarded"), false},
		{session(5, 0, false, "less forwarded"), true},
		{session(3, 9, false, "lower index"), true},
		{session(9, 9, true, "verified"), true},
		{session(0, 0, false, "unverified"), false},
		{session(10, 0, true, "verified higher index"), false},
		{session(8, 9, true, "verified lower index"), true},
		{session(8, 5, true, "verified less forwarded"), true},
	}
	cur := "first"
	for i, st := range steps {
		before := s.MustOK(t, "GET", hstest.Path("/room_keys/version"), tok, nil).Str("etag")
		r = s.MustOK(t, "PUT", sp("!r:localhost", "S1"), tok, st.key)
		if st.replace {
			cur = dig(st.key, "session_data", "ciphertext").(string)
		}
		got := s.MustOK(t, "GET", sp("!r:localhost", "S1"), tok, nil)
		if dig(got.JSON, "session_data", "ciphertext") != cur {
			t.Fatalf("step %d (%v): stored %s, want %s", i, st.key, got.Body, cur)
		}
		if (r.Str("etag") != before) != st.replace {
			t.Fatalf("step %d: etag %s -> %s, replace=%v", i, before, r.Str("etag"), st.replace)
		}
	}

	// Room and whole-backup uploads, reads and counts.
	s.MustOK(t, "PUT", hstest.Path("/room_keys/keys/%s", "!r:localhost")+"?version="+v1, tok, map[string]any{"sessions": map[string]any{"S2": session(0, 0, false, "s2")}})
	r = s.MustOK(t, "PUT", hstest.Path("/room_keys/keys")+"?version="+v1, tok, map[string]any{"rooms": map[string]any{"!q:localhost": map[string]any{"sessions": map[string]any{"S3": session(0, 0, false, "s3")}}}})
	if r.JSON["count"] != 3.0 {
		t.Fatalf("count: %s", r.Body)
	}
	r = s.MustOK(t, "GET", hstest.Path("/room_keys/keys")+"?version="+v1, tok, nil)
	if dig(r.JSON, "rooms", "!q:localhost", "sessions", "S3", "session_data", "ciphertext") != "s3" || dig(r.JSON, "rooms", "!r:localhost", "sessions", "S2") == nil {
		t.Fatalf("all keys: %s", r.Body)
	}
	r = s.MustOK(t, "GET", hstest.Path("/room_keys/keys/%s", "!r:localhost")+"?version="+v1, tok, nil)
	if ss, _ := r.JSON["sessions"].(map[string]any); len(ss) != 2 {
		t.Fatalf("room keys: %s", r.Body)
	}
	r = s.MustOK(t, "GET", hstest.Path("/room_keys/keys/%s", "!none:localhost")+"?version="+v1, tok, nil)
	if ss, ok := r.JSON["sessions"].(map[string]any); !ok || len(ss) != 0 {
		t.Fatalf("empty room: %s", r.Body)
	}
	expect(t, s.Do(t, "GET", sp("!r:localhost", "NOPE"), tok, nil), 404, "M_NOT_FOUND")
	expect(t, s.Do(t, "GET", hstest.Path("/room_keys/keys"), tok, nil), 400, "M_MISSING_PARAM")

	// Bad bodies.
	expect(t, s.Do(t, "PUT", sp("!r:localhost", "S9"), tok, map[string]any{"first_message_index": 0}), 400, "M_BAD_JSON")
	expect(t, s.Do(t, "PUT", sp("!r:localhost", "S9"), tok, map[string]any{"first_message_index": "0", "forwarded_count": 0, "is_verified": false, "session_data": map[string]any{}}), 400, "M_BAD_JSON")
	expect(t, s.Do(t, "PUT", hstest.Path("/room_keys/keys/%s", "!r:localhost")+"?version="+v1, tok, map[string]any{}), 400, "M_MISSING_PARAM")
	expect(t, s.Do(t, "PUT", hstest.Path("/room_keys/keys")+"?version="+v1, tok, map[string]any{"rooms": map[string]any{"!x:y": "z"}}), 400, "M_BAD_JSON")
	expect(t, s.Do(t, "PUT", sp("!r:localhost", "S9"), tok, "{"), 400, "M_NOT_JSON")

	// A new version becomes current; writing to the old one is refused.
	v2 := s.MustOK(t, "POST", hstest.Path("/room_keys/version"), tok, map[string]any{"algorithm": alg, "auth_data": auth}).Str("version")
	r = s.Do(t, "PUT", sp("!r:localhost", "S1"), tok, session(0, 0, true, "x"))
	expect(t, r, 403, "M_WRONG_ROOM_KEYS_VERSION")
	if r.Str("current_version") != v2 {
		t.Fatalf("current_version: %s", r.Body)
	}
	// Old version still readable by number.
	r = s.MustOK(t, "GET", hstest.Path("/room_keys/version/%s", v1), tok, nil)
	if r.JSON["count"] != 3.0 {
		t.Fatalf("old version: %s", r.Body)
	}

	// Update: auth_data changes, algorithm and version may not.
	newAuth := map[string]any{"public_key": "hijk"}
	expect(t, s.Do(t, "PUT", hstest.Path("/room_keys/version/%s", v2), tok, map[string]any{"algorithm": "other", "auth_data": newAuth}), 400, "M_INVALID_PARAM")
	expect(t, s.Do(t, "PUT", hstest.Path("/room_keys/version/%s", v2), tok, map[string]any{"algorithm": alg, "auth_data": newAuth, "version": v1}), 400, "M_INVALID_PARAM")
	expect(t, s.Do(t, "PUT", hstest.Path("/room_keys/version/%s", "99"), tok, map[string]any{"algorithm": alg, "auth_data": newAuth}), 404, "M_NOT_FOUND")
	s.MustOK(t, "PUT", hstest.Path("/room_keys/version/%s", v2), tok, map[string]any{"algorithm": alg, "auth_data": newAuth, "version": v2})
	if r = s.MustOK(t, "GET", hstest.Path("/room_keys/version"), tok, nil); dig(r.JSON, "auth_data", "public_key") != "hijk" {
		t.Fatalf("update: %s", r.Body)
	}

	// Deleting keys changes the count and the etag.
	r = s.MustOK(t, "GET", hstest.Path("/room_keys/version/%s", v1), tok, nil)
	e := r.Str("etag")
	r = s.MustOK(t, "DELETE", sp("!r:localhost", "S1"), tok, nil)
	if r.JSON["count"] != 2.0 || r.Str("etag") == e {
		t.Fatalf("delete session: %s", r.Body)
	}
	r = s.MustOK(t, "DELETE", hstest.Path("/room_keys/keys")+"?version="+v1, tok, nil)
	if r.JSON["count"] != 0.0 {
		t.Fatalf("delete all: %s", r.Body)
	}

	// Deleting the current version makes the previous one current again.
	s.MustOK(t, "DELETE", hstest.Path("/room_keys/version/%s", v2), tok, nil)
	expect(t, s.Do(t, "DELETE", hstest.Path("/room_keys/version/%s", v2), tok, nil), 404, "M_NOT_FOUND")
	expect(t, s.Do(t, "GET", hstest.Path("/room_keys/version/%s", v2), tok, nil), 404, "M_NOT_FOUND")
	if r = s.MustOK(t, "GET", hstest.Path("/room_keys/version"), tok, nil); r.Str("version") != v1 {
		t.Fatalf("current after delete: %s", r.Body)
	}
	// Version numbers are not reused.
	if v3 := s.MustOK(t, "POST", hstest.Path("/room_keys/version"), tok, map[string]any{"algorithm": alg, "auth_data": auth}).Str("version"); v3 == v2 || v3 == v1 {
		t.Fatalf("version reused: %s", v3)
	}
	expect(t, s.Do(t, "GET", hstest.Path("/room_keys/version/%s", "abc"), tok, nil), 404, "M_NOT_FOUND")
}
