package clientapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"conclave/internal/homeserver/hstest"
)

func ruleIDs(t *testing.T, r *hstest.Response, kind string) []string {
	t.Helper()
	var body struct {
		Global map[string][]struct {
			RuleID string `json:"rule_id"`
		} `json:"global"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, x := range body.Global[kind] {
		ids = append(ids, x.RuleID)
	}
	return ids
}

func pushRulesInSync(t *testing.T, r *hstest.Response) map[string]any {
	t.Helper()
	ad, _ := r.JSON["account_data"].(map[string]any)
	evs, _ := ad["events"].([]any)
	for _, e := range evs {
		m := e.(map[string]any)
		if m["type"] == "m.push_rules" {
			return m["content"].(map[string]any)
		}
	}
	return nil
}

func TestPushRules(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	base := "/_matrix/client/v3/pushrules/"

	// Defaults for a user who never changed anything, in /pushrules/ and
	// an initial /sync.
	r := s.MustOK(t, "GET", base, alice.Token, nil)
	if ids := ruleIDs(t, r, "override"); len(ids) == 0 || ids[0] != ".m.rule.master" {
		t.Fatalf("defaults: %s", r.Body)
	}
	sr := s.MustOK(t, "GET", "/_matrix/client/v3/sync", alice.Token, nil)
	if pushRulesInSync(t, sr) == nil {
		t.Fatalf("no m.push_rules in initial sync: %s", sr.Body)
	}
	since := sr.Str("next_batch")
	r = s.MustOK(t, "GET", base+"global/", alice.Token, nil)
	if _, ok := r.JSON["underride"]; !ok {
		t.Fatalf("global/: %s", r.Body)
	}
	r = s.MustOK(t, "GET", base+"global/content/.m.rule.contains_user_name", alice.Token, nil)
	if r.Str("pattern") != "alice" || r.JSON["default"] != true {
		t.Fatalf("contains_user_name: %s", r.Body)
	}
	r = s.MustOK(t, "GET", base+"global/room/", alice.Token, nil)
	if string(r.Body) != "[]" {
		t.Fatalf("global/room/: %s", r.Body)
	}

	// A PUT wakes a waiting incremental sync, which carries the new rules.
	done := make(chan *hstest.Response, 1)
	go func() {
		done <- s.Do(t, "GET", "/_matrix/client/v3/sync?timeout=20000&since="+since, alice.Token, nil)
	}()
	time.Sleep(50 * time.Millisecond) // let the long-poll start; the test passes either way
	roomRule := base + "global/room/!foo:example.com"
	s.MustOK(t, "PUT", roomRule, alice.Token, map[string]any{"actions": []string{"notify"}})
	sr = <-done
	pr := pushRulesInSync(t, sr)
	if pr == nil || !strings.Contains(string(sr.Body), "!foo:example.com") {
		t.Fatalf("incremental sync: %s", sr.Body)
	}

	// enabled and actions of a user rule.
	s.MustOK(t, "PUT", roomRule+"/enabled", alice.Token, map[string]any{"enabled": false})
	if r = s.MustOK(t, "GET", roomRule+"/enabled", alice.Token, nil); r.JSON["enabled"] != false {
		t.Fatalf("enabled: %s", r.Body)
	}
	s.MustOK(t, "PUT", roomRule+"/actions", alice.Token, map[string]any{"actions": []any{"dont_notify"}})
	if r = s.MustOK(t, "GET", roomRule+"/actions", alice.Token, nil); string(r.Body) != `{"actions":["dont_notify"]}` {
		t.Fatalf("actions: %s", r.Body)
	}
	// ... and of a server-default rule.
	s.MustOK(t, "PUT", base+"global/override/.m.rule.master/enabled", alice.Token, map[string]any{"enabled": true})
	s.MustOK(t, "PUT", base+"global/underride/.m.rule.message/actions", alice.Token, map[string]any{"actions": []any{}})
	r = s.MustOK(t, "GET", base+"global/override/.m.rule.master", alice.Token, nil)
	if r.JSON["enabled"] != true {
		t.Fatalf("master: %s", r.Body)
	}

	// Ordering: new rules go first among user rules; before/after place them.
	cond := []map[string]any{{"kind": "event_match", "key": "type", "pattern": "org.example"}}
	s.MustOK(t, "PUT", base+"global/override/one", alice.Token, map[string]any{"actions": []any{}, "conditions": cond})
	s.MustOK(t, "PUT", base+"global/override/two", alice.Token, map[string]any{"actions": []any{}, "conditions": cond})
	s.MustOK(t, "PUT", base+"global/override/three?after=one", alice.Token, map[string]any{"actions": []any{}})
	s.MustOK(t, "PUT", base+"global/override/zero?before=two&after=one", alice.Token, map[string]any{"actions": []any{}})
	// Updating keeps the place.
	s.MustOK(t, "PUT", base+"global/override/one", alice.Token, map[string]any{"actions": []any{"notify"}})
	r = s.MustOK(t, "GET", base, alice.Token, nil)
	ids := ruleIDs(t, r, "override")
	if strings.Join(ids[:5], ",") != ".m.rule.master,zero,two,one,three" || ids[5] != ".m.rule.suppress_notices" {
		t.Fatalf("override order: %v", ids)
	}
	s.MustOK(t, "PUT", base+"global/content/cake", alice.Token, map[string]any{"actions": []any{"notify"}, "pattern": "cake*"})
	s.MustOK(t, "PUT", base+"global/sender/"+bob.UserID, alice.Token, map[string]any{"actions": []any{"dont_notify"}})
	r = s.MustOK(t, "GET", base+"global/content/cake", alice.Token, nil)
	if r.Str("pattern") != "cake*" || r.JSON["enabled"] != true || r.JSON["default"] != false {
		t.Fatalf("content rule: %s", r.Body)
	}

	// Delete.
	s.MustOK(t, "DELETE", base+"global/override/zero", alice.Token, nil)
	expectErr(t, s.Do(t, "GET", base+"global/override/zero", alice.Token, nil), 404, "M_NOT_FOUND")
	expectErr(t, s.Do(t, "DELETE", base+"global/override/zero", alice.Token, nil), 404, "M_NOT_FOUND")
	expectErr(t, s.Do(t, "DELETE", base+"global/override/.m.rule.master", alice.Token, nil), 404, "M_NOT_FOUND")

	// Rules are per user.
	expectErr(t, s.Do(t, "GET", base+"global/override/one", bob.Token, nil), 404, "M_NOT_FOUND")

	// Errors, none of which changes anything.
	before := s.MustOK(t, "GET", base, alice.Token, nil).Body
	expectErr(t, s.Do(t, "GET", base, "", nil), 401, "M_MISSING_TOKEN")
	expectErr(t, s.Do(t, "PUT", base+"global/override/.m.rule.x", alice.Token, map[string]any{"actions": []any{}}), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "PUT", base+"global/override/x", alice.Token, map[string]any{}), 400, "M_MISSING_PARAM")
	expectErr(t, s.Do(t, "PUT", base+"global/override/x", alice.Token, map[string]any{"actions": []any{"boom"}}), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "PUT", base+"global/override/x", alice.Token, map[string]any{"actions": "notify"}), 400, "M_BAD_JSON")
	expectErr(t, s.Do(t, "PUT", base+"global/override/x", alice.Token, `{"actions":`), 400, "M_NOT_JSON")
	expectErr(t, s.Do(t, "PUT", base+"global/override/x?before=nope", alice.Token, map[string]any{"actions": []any{}}), 404, "M_NOT_FOUND")
	expectErr(t, s.Do(t, "PUT", base+"global/override/x?after=.m.rule.master", alice.Token, map[string]any{"actions": []any{}}), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "PUT", base+"global/content/x", alice.Token, map[string]any{"actions": []any{}}), 400, "M_MISSING_PARAM")
	expectErr(t, s.Do(t, "PUT", base+"global/room/notaroom", alice.Token, map[string]any{"actions": []any{}}), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "PUT", base+"global/bogus/x", alice.Token, map[string]any{"actions": []any{}}), 400, "M_UNRECOGNIZED")
	// Reading a rule of a kind this server does not know: it does not exist
	// (Complement's thread tests probe MSC4306's postcontent kind this way).
	expectErr(t, s.Do(t, "GET", base+"global/postcontent/.io.element.msc4306.rule.subscribed_thread", alice.Token, nil), 404, "M_NOT_FOUND")
	expectErr(t, s.Do(t, "PUT", base+"device/override/x", alice.Token, map[string]any{"actions": []any{}}), 400, "M_UNRECOGNIZED")
	expectErr(t, s.Do(t, "GET", base+"device/", alice.Token, nil), 400, "M_UNRECOGNIZED")
	expectErr(t, s.Do(t, "PUT", base+"global/override/nope/enabled", alice.Token, map[string]any{"enabled": true}), 404, "M_NOT_FOUND")
	expectErr(t, s.Do(t, "PUT", base+"global/override/one/enabled", alice.Token, map[string]any{}), 400, "M_MISSING_PARAM")
	expectErr(t, s.Do(t, "PUT", base+"global/override/one/enabled", alice.Token, map[string]any{"enabled": "yes"}), 400, "M_BAD_JSON")
	expectErr(t, s.Do(t, "PUT", base+"global/override/one/actions", alice.Token, map[string]any{}), 400, "M_MISSING_PARAM")
	expectErr(t, s.Do(t, "PUT", base+"global/override/nope/actions", alice.Token, map[string]any{"actions": []any{}}), 404, "M_NOT_FOUND")
	expectErr(t, s.Do(t, "GET", base+"global/override/nope/actions", alice.Token, nil), 404, "M_NOT_FOUND")
	big := `{"actions":[],"conditions":[` + strings.Repeat(`{"kind":"event_match","key":"type","pattern":"x"},`, 40) + `{"kind":"x"}]}`
	expectErr(t, s.Do(t, "PUT", base+"global/override/x", alice.Token, big), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "PUT", base+"global/override/x", alice.Token, `{"actions":[],"pad":"`+strings.Repeat("x", 70<<10)+`"}`), http.StatusRequestEntityTooLarge, "M_TOO_LARGE")
	// The account data API cannot set them.
	expectErr(t, s.Do(t, "PUT", hstest.Path("/user/%s/account_data/m.push_rules", alice.UserID), alice.Token, map[string]any{}), 405, "M_BAD_JSON")
	if after := s.MustOK(t, "GET", base, alice.Token, nil).Body; string(after) != string(before) {
		t.Fatal("a failed request changed the rules")
	}
}

func TestPushers(t *testing.T) {
	s := hstest.Start(t)
	alice := s.Register(t, "alice")
	bob := s.CreateUser(t, "bob")
	pusher := func(key string, extra map[string]any) map[string]any {
		m := map[string]any{"pushkey": key, "kind": "http", "app_id": "org.example.app", "app_display_name": "App",
			"device_display_name": "Phone", "lang": "en", "profile_tag": "tag",
			"data": map[string]any{"url": "https://push.example.org/_matrix/push/v1/notify", "format": "event_id_only"}}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	list := func(u *hstest.User) []any {
		t.Helper()
		r := s.MustOK(t, "GET", "/_matrix/client/v3/pushers", u.Token, nil)
		return r.JSON["pushers"].([]any)
	}
	if n := len(list(alice)); n != 0 {
		t.Fatalf("pushers at start: %d", n)
	}
	s.MustOK(t, "POST", "/_matrix/client/v3/pushers/set", alice.Token, pusher("k1", nil))
	ps := list(alice)
	if len(ps) != 1 {
		t.Fatalf("pushers: %v", ps)
	}
	p := ps[0].(map[string]any)
	if p["pushkey"] != "k1" || p["kind"] != "http" || p["app_id"] != "org.example.app" || p["lang"] != "en" || p["profile_tag"] != "tag" ||
		p["data"].(map[string]any)["format"] != "event_id_only" {
		t.Fatalf("pusher: %v", p)
	}
	// Updating replaces; a second key adds.
	s.MustOK(t, "POST", "/_matrix/client/v3/pushers/set", alice.Token, pusher("k1", map[string]any{"lang": "fr"}))
	s.MustOK(t, "POST", "/_matrix/client/v3/pushers/set", alice.Token, pusher("k2", nil))
	if ps = list(alice); len(ps) != 2 || ps[0].(map[string]any)["lang"] != "fr" {
		t.Fatalf("after update: %v", ps)
	}
	// Another user taking the same app ID + pushkey removes alice's, unless append.
	s.MustOK(t, "POST", "/_matrix/client/v3/pushers/set", bob.Token, pusher("k2", map[string]any{"append": true}))
	if len(list(alice)) != 2 {
		t.Fatal("append removed another user's pusher")
	}
	s.MustOK(t, "POST", "/_matrix/client/v3/pushers/set", bob.Token, pusher("k2", nil))
	if len(list(alice)) != 1 || len(list(bob)) != 1 {
		t.Fatal("same app_id+pushkey without append should move the pusher")
	}
	// kind null deletes.
	s.MustOK(t, "POST", "/_matrix/client/v3/pushers/set", bob.Token, map[string]any{"pushkey": "k2", "app_id": "org.example.app", "kind": nil})
	if len(list(bob)) != 0 {
		t.Fatal("kind null did not delete")
	}

	// Errors.
	set := "/_matrix/client/v3/pushers/set"
	expectErr(t, s.Do(t, "POST", set, "", pusher("k", nil)), 401, "M_MISSING_TOKEN")
	expectErr(t, s.Do(t, "POST", set, alice.Token, `{`), 400, "M_NOT_JSON")
	expectErr(t, s.Do(t, "POST", set, alice.Token, map[string]any{"app_id": "a", "kind": "http"}), 400, "M_MISSING_PARAM")
	expectErr(t, s.Do(t, "POST", set, alice.Token, map[string]any{"pushkey": "k", "app_id": "a"}), 400, "M_MISSING_PARAM")
	expectErr(t, s.Do(t, "POST", set, alice.Token, pusher("k", map[string]any{"kind": 5})), 400, "M_BAD_JSON")
	expectErr(t, s.Do(t, "POST", set, alice.Token, pusher("k", map[string]any{"kind": "carrier-pigeon"})), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "POST", set, alice.Token, pusher("k", map[string]any{"kind": "email"})), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "POST", set, alice.Token, pusher("k", map[string]any{"lang": nil})), 400, "M_MISSING_PARAM")
	expectErr(t, s.Do(t, "POST", set, alice.Token, pusher("k", map[string]any{"data": map[string]any{}})), 400, "M_MISSING_PARAM")
	expectErr(t, s.Do(t, "POST", set, alice.Token, pusher("k", map[string]any{"data": map[string]any{"url": "https://x/other"}})), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "POST", set, alice.Token, pusher("k", map[string]any{"data": map[string]any{"url": "ftp://x/_matrix/push/v1/notify"}})), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "POST", set, alice.Token, pusher("k", map[string]any{"data": "x"})), 400, "M_BAD_JSON")
	expectErr(t, s.Do(t, "POST", set, alice.Token, pusher(strings.Repeat("k", 513), nil)), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "POST", set, alice.Token, pusher("k", map[string]any{"app_id": strings.Repeat("a", 65)})), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "POST", set, alice.Token, pusher("k", map[string]any{"append": "yes"})), 400, "M_BAD_JSON")
	if len(list(alice)) != 1 {
		t.Fatal("a failed request changed the pushers")
	}

	// Pushers go with their device: a password change that logs out other
	// devices removes theirs and keeps the caller's.
	other := login(t, s, "alice", "correct horse battery alice", nil)
	otherTok := other.Str("access_token")
	s.MustOK(t, "POST", set, otherTok, pusher("k3", nil))
	if len(list(alice)) != 2 {
		t.Fatal("second device pusher")
	}
	s.MustOK(t, "POST", "/_matrix/client/v3/account/password", alice.Token, map[string]any{"new_password": "another good password",
		"auth": map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": alice.UserID}, "password": "correct horse battery alice"}})
	if ps = list(alice); len(ps) != 1 || ps[0].(map[string]any)["pushkey"] != "k1" {
		t.Fatalf("after password change: %v", ps)
	}
	// Logout removes the device's pushers too.
	s.MustOK(t, "POST", "/_matrix/client/v3/logout", alice.Token, nil)
	if ps, err := s.HS.Store.PushersOf(t.Context(), alice.UserID); err != nil || len(ps) != 0 {
		t.Fatalf("after logout: %v %v", ps, err)
	}
}
