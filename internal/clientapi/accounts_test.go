package clientapi_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"conclave/internal/accounts"
	"conclave/internal/config"
	"conclave/internal/homeserver/hstest"
)

const v3 = "/_matrix/client/v3"

func dummy() map[string]any { return map[string]any{"type": "m.login.dummy"} }

func passwordAuth(session, user, pw string) map[string]any {
	return map[string]any{"type": "m.login.password", "session": session,
		"identifier": map[string]any{"type": "m.id.user", "user": user}, "password": pw}
}

func wantErr(t *testing.T, r *hstest.Response, status int, code string) {
	t.Helper()
	if r.Status != status || r.Errcode() != code {
		t.Fatalf("want %d %s, got %d %s", status, code, r.Status, r.Body)
	}
}

func login(t *testing.T, s *hstest.Server, user, pw string, extra map[string]any) *hstest.Response {
	t.Helper()
	body := map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": user}, "password": pw}
	for k, v := range extra {
		body[k] = v
	}
	return s.Do(t, "POST", v3+"/login", "", body)
}

func TestRegisterUIADance(t *testing.T) {
	s := hstest.Start(t)
	// No auth: 401 with the flows and a session.
	r := s.Do(t, "POST", v3+"/register", "", map[string]any{"username": "alice", "password": "pw-alice"})
	if r.Status != http.StatusUnauthorized || r.Str("session") == "" || r.JSON["errcode"] != nil {
		t.Fatalf("first step: %d %s", r.Status, r.Body)
	}
	flows, _ := r.JSON["flows"].([]any)
	if len(flows) != 1 || !strings.Contains(string(r.Body), `"stages":["m.login.dummy"]`) || r.JSON["params"] == nil {
		t.Fatalf("flows: %s", r.Body)
	}
	if c, ok := r.JSON["completed"].([]any); !ok || len(c) != 0 {
		t.Fatalf("completed: %s", r.Body)
	}
	sess := r.Str("session")
	// Unknown session.
	r = s.Do(t, "POST", v3+"/register", "", map[string]any{"username": "alice", "password": "pw-alice", "auth": map[string]any{"type": "m.login.dummy", "session": "nope"}})
	wantErr(t, r, 400, "M_UNKNOWN")
	// Unknown stage type.
	r = s.Do(t, "POST", v3+"/register", "", map[string]any{"username": "alice", "password": "pw-alice", "auth": map[string]any{"type": "m.login.password", "session": sess}})
	wantErr(t, r, 400, "M_UNRECOGNIZED")
	// Completing the dummy stage registers.
	r = s.MustOK(t, "POST", v3+"/register", "", map[string]any{"username": "alice", "password": "pw-alice", "initial_device_display_name": "phone",
		"auth": map[string]any{"type": "m.login.dummy", "session": sess}})
	if r.Str("user_id") != "@alice:localhost" || r.Str("access_token") == "" || r.Str("device_id") == "" || r.JSON["refresh_token"] != nil {
		t.Fatalf("register: %s", r.Body)
	}
	tok, dev := r.Str("access_token"), r.Str("device_id")
	who := s.MustOK(t, "GET", v3+"/account/whoami", tok, nil)
	if who.Str("user_id") != "@alice:localhost" || who.Str("device_id") != dev || who.JSON["is_guest"] != false {
		t.Fatalf("whoami: %s", who.Body)
	}
	d := s.MustOK(t, "GET", hstest.Path("/devices/%s", dev), tok, nil)
	if d.Str("display_name") != "phone" {
		t.Fatalf("device: %s", d.Body)
	}
	// The session authorised one registration and is gone.
	r = s.Do(t, "POST", v3+"/register", "", map[string]any{"username": "alice2", "auth": map[string]any{"type": "m.login.dummy", "session": sess}})
	wantErr(t, r, 400, "M_UNKNOWN")
	// Login works with the registered password.
	s.MustOK(t, "POST", v3+"/login", "", map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": "alice"}, "password": "pw-alice"})
}

func TestRegisterUsernames(t *testing.T) {
	s := hstest.Start(t)
	s.Register(t, "bob")
	reg := func(name string) *hstest.Response {
		return s.Do(t, "POST", v3+"/register", "", map[string]any{"username": name, "password": "x", "auth": dummy()})
	}
	wantErr(t, reg("bob"), 400, "M_USER_IN_USE")
	wantErr(t, reg("BOB"), 400, "M_USER_IN_USE") // lower-cased first, as Synapse does
	for _, bad := range []string{"b b", "bob!", "bób", "a:b", "@bob", strings.Repeat("a", 250)} {
		wantErr(t, reg(bad), 400, "M_INVALID_USERNAME")
	}
	// Upper case is folded: "Carol" becomes @carol.
	r := s.MustOK(t, "POST", v3+"/register", "", map[string]any{"username": "Carol", "password": "x", "auth": dummy()})
	if r.Str("user_id") != "@carol:localhost" {
		t.Fatalf("Carol: %s", r.Body)
	}
	// The longest name that fits: "@" + local + ":localhost" = 255 bytes.
	long := strings.Repeat("z", 255-len("@:localhost"))
	if r := reg(long); r.Status != 200 {
		t.Fatalf("255-byte user ID refused: %s", r.Body)
	}
	wantErr(t, reg(long+"z"), 400, "M_INVALID_USERNAME")
	// No username: a random one.
	r = s.MustOK(t, "POST", v3+"/register", "", map[string]any{"auth": dummy()})
	if !strings.HasPrefix(r.Str("user_id"), "@") || r.Str("user_id") == "@:localhost" {
		t.Fatalf("random: %s", r.Body)
	}
	// Availability.
	r = s.MustOK(t, "GET", v3+"/register/available?username=dave", "", nil)
	if r.JSON["available"] != true {
		t.Fatalf("available: %s", r.Body)
	}
	wantErr(t, s.Do(t, "GET", v3+"/register/available?username=Bob", "", nil), 400, "M_USER_IN_USE")
	wantErr(t, s.Do(t, "GET", v3+"/register/available?username=b%20b", "", nil), 400, "M_INVALID_USERNAME")
	wantErr(t, s.Do(t, "GET", v3+"/register/available", "", nil), 400, "M_MISSING_PARAM")
	// Bad bodies.
	wantErr(t, s.Do(t, "POST", v3+"/register", "", "{not json"), 400, "M_NOT_JSON")
	wantErr(t, s.Do(t, "POST", v3+"/register", "", `{"username": 5}`), 400, "M_BAD_JSON")
	wantErr(t, s.Do(t, "POST", v3+"/register", "", `{"auth": "dummy"}`), 400, "M_BAD_JSON")
	wantErr(t, s.Do(t, "POST", v3+"/register", "", `{"inhibit_login": "yes"}`), 400, "M_BAD_JSON")
	wantErr(t, s.Do(t, "POST", v3+"/register", "", map[string]any{"password": strings.Repeat("p", 513), "auth": dummy()}), 400, "M_INVALID_PARAM")
	wantErr(t, s.Do(t, "POST", v3+"/register?kind=admin", "", map[string]any{"auth": dummy()}), 400, "M_INVALID_PARAM")
}

func TestRegisterOptions(t *testing.T) {
	s := hstest.Start(t)
	r := s.MustOK(t, "POST", v3+"/register", "", map[string]any{"username": "inh", "password": "x", "inhibit_login": true, "auth": dummy()})
	if r.Str("user_id") != "@inh:localhost" || r.JSON["access_token"] != nil || r.JSON["device_id"] != nil {
		t.Fatalf("inhibit_login: %s", r.Body)
	}
	r = s.MustOK(t, "POST", v3+"/register", "", map[string]any{"username": "dev", "password": "x", "device_id": "MYDEVICE", "refresh_token": true, "auth": dummy()})
	if r.Str("device_id") != "MYDEVICE" || r.Str("refresh_token") == "" || r.JSON["expires_in_ms"] != float64(300000) {
		t.Fatalf("device_id/refresh: %s", r.Body)
	}
	// Guests: no auth needed, IsGuest set, limited rights.
	g := s.MustOK(t, "POST", v3+"/register?kind=guest", "", map[string]any{})
	gt := g.Str("access_token")
	who := s.MustOK(t, "GET", v3+"/account/whoami", gt, nil)
	if who.JSON["is_guest"] != true {
		t.Fatalf("guest whoami: %s", who.Body)
	}
	wantErr(t, s.Do(t, "POST", v3+"/account/password", gt, map[string]any{"new_password": "x"}), 403, "M_GUEST_ACCESS_FORBIDDEN")
	wantErr(t, s.Do(t, "POST", v3+"/account/deactivate", gt, map[string]any{}), 403, "M_GUEST_ACCESS_FORBIDDEN")
	wantErr(t, s.Do(t, "POST", v3+"/delete_devices", gt, map[string]any{"devices": []string{}}), 403, "M_GUEST_ACCESS_FORBIDDEN")
}

func TestRegistrationClosedAndTokens(t *testing.T) {
	s := hstest.Start(t, func(c *config.Config) { c.EnableRegistration = false })
	wantErr(t, s.Do(t, "POST", v3+"/register", "", map[string]any{"username": "x", "auth": dummy()}), 403, "M_FORBIDDEN")
	wantErr(t, s.Do(t, "GET", v3+"/register/available?username=x", "", nil), 403, "M_FORBIDDEN")
	wantErr(t, s.Do(t, "GET", "/_matrix/client/v1/register/m.login.registration_token/validity?token=a", "", nil), 403, "M_FORBIDDEN")

	s = hstest.Start(t, func(c *config.Config) { c.EnableRegistration = false; c.RegistrationTokens = "tok-one, tok-two" })
	r := s.Do(t, "POST", v3+"/register", "", map[string]any{"username": "x", "password": "p"})
	if r.Status != 401 || !strings.Contains(string(r.Body), `"stages":["m.login.registration_token"]`) || strings.Contains(string(r.Body), "m.login.dummy") {
		t.Fatalf("token flows: %d %s", r.Status, r.Body)
	}
	sess := r.Str("session")
	// Dummy is not offered.
	wantErr(t, s.Do(t, "POST", v3+"/register", "", map[string]any{"username": "x", "auth": map[string]any{"type": "m.login.dummy", "session": sess}}), 400, "M_UNRECOGNIZED")
	// A wrong token: 401 with the flows and the error.
	r = s.Do(t, "POST", v3+"/register", "", map[string]any{"username": "x", "auth": map[string]any{"type": "m.login.registration_token", "token": "bad", "session": sess}})
	if r.Status != 401 || r.Errcode() != "M_FORBIDDEN" || r.Str("session") != sess || r.JSON["flows"] == nil {
		t.Fatalf("bad token: %d %s", r.Status, r.Body)
	}
	r = s.MustOK(t, "POST", v3+"/register", "", map[string]any{"username": "x", "password": "p", "auth": map[string]any{"type": "m.login.registration_token", "token": "tok-two", "session": sess}})
	if r.Str("user_id") != "@x:localhost" {
		t.Fatalf("token register: %s", r.Body)
	}
	v := s.MustOK(t, "GET", "/_matrix/client/v1/register/m.login.registration_token/validity?token=tok-one", "", nil)
	if v.JSON["valid"] != true {
		t.Fatalf("validity: %s", v.Body)
	}
	v = s.MustOK(t, "GET", "/_matrix/client/v1/register/m.login.registration_token/validity?token=tok", "", nil)
	if v.JSON["valid"] != false {
		t.Fatalf("validity of a wrong token: %s", v.Body)
	}
	wantErr(t, s.Do(t, "GET", "/_matrix/client/v1/register/m.login.registration_token/validity", "", nil), 400, "M_MISSING_PARAM")
}

func TestLogin(t *testing.T) {
	s := hstest.Start(t)
	s.Register(t, "erin")
	pw := "correct horse battery erin"
	flows := s.MustOK(t, "GET", v3+"/login", "", nil)
	if !strings.Contains(string(flows.Body), `"type":"m.login.password"`) {
		t.Fatalf("flows: %s", flows.Body)
	}
	// Localpart, full ID, other case, deprecated top-level user.
	for _, u := range []string{"erin", "@erin:localhost", "ERIN", "@Erin:localhost"} {
		r := login(t, s, u, pw, nil)
		if r.Status != 200 || r.Str("user_id") != "@erin:localhost" {
			t.Fatalf("login as %q: %d %s", u, r.Status, r.Body)
		}
	}
	r := s.MustOK(t, "POST", v3+"/login", "", map[string]any{"type": "m.login.password", "user": "erin", "password": pw})
	if r.Str("user_id") != "@erin:localhost" || r.Str("home_server") != "localhost" {
		t.Fatalf("deprecated user: %s", r.Body)
	}
	wantErr(t, login(t, s, "erin", "wrong", nil), 403, "M_FORBIDDEN")
	wantErr(t, login(t, s, "nobody", pw, nil), 403, "M_FORBIDDEN")
	wantErr(t, login(t, s, "@erin:elsewhere", pw, nil), 403, "M_FORBIDDEN")
	wantErr(t, s.Do(t, "POST", v3+"/login", "", map[string]any{"type": "m.login.token", "token": "x"}), 400, "M_UNKNOWN")
	wantErr(t, s.Do(t, "POST", v3+"/login", "", map[string]any{"password": pw}), 400, "M_MISSING_PARAM")
	wantErr(t, s.Do(t, "POST", v3+"/login", "", map[string]any{"type": "m.login.password", "password": pw}), 400, "M_MISSING_PARAM")
	wantErr(t, s.Do(t, "POST", v3+"/login", "", map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.weird"}, "password": pw}), 400, "M_UNKNOWN")
	wantErr(t, s.Do(t, "POST", v3+"/login", "", `{"type": "m.login.password", "user": ["erin"]}`), 400, "M_BAD_JSON")
	wantErr(t, s.Do(t, "POST", v3+"/login", "", `]`), 400, "M_NOT_JSON")
	wantErr(t, s.Do(t, "POST", v3+"/login", "", ""), 400, "M_NOT_JSON")

	// device_id reuse: the old token of that device stops working, the device stays.
	a := login(t, s, "erin", pw, map[string]any{"device_id": "LAPTOP", "initial_device_display_name": "Laptop"})
	b := login(t, s, "erin", pw, map[string]any{"device_id": "LAPTOP"})
	if a.Str("device_id") != "LAPTOP" || b.Str("device_id") != "LAPTOP" {
		t.Fatalf("device reuse: %s / %s", a.Body, b.Body)
	}
	wantErr(t, s.Do(t, "GET", v3+"/account/whoami", a.Str("access_token"), nil), 401, "M_UNKNOWN_TOKEN")
	d := s.MustOK(t, "GET", v3+"/devices/LAPTOP", b.Str("access_token"), nil)
	if d.Str("display_name") != "Laptop" || d.Str("last_seen_ip") != "127.0.0.1" {
		t.Fatalf("reused device: %s", d.Body)
	}
	// A very long display name is cut to 100 characters.
	c := login(t, s, "erin", pw, map[string]any{"initial_device_display_name": strings.Repeat("é", 150)})
	d = s.MustOK(t, "GET", hstest.Path("/devices/%s", c.Str("device_id")), c.Str("access_token"), nil)
	if n := len([]rune(d.Str("display_name"))); n != 100 {
		t.Fatalf("display name of %d runes", n)
	}
	wantErr(t, login(t, s, "erin", pw, map[string]any{"device_id": strings.Repeat("D", 256)}), 400, "M_INVALID_PARAM")
}

func TestRefreshRotation(t *testing.T) {
	s := hstest.Start(t)
	s.Register(t, "fay")
	r := login(t, s, "fay", "correct horse battery fay", map[string]any{"refresh_token": true})
	if r.Status != 200 || r.Str("refresh_token") == "" || r.JSON["expires_in_ms"] != float64(300000) {
		t.Fatalf("login with refresh: %s", r.Body)
	}
	at1, rt1 := r.Str("access_token"), r.Str("refresh_token")
	s.MustOK(t, "GET", v3+"/account/whoami", at1, nil)

	n := s.MustOK(t, "POST", v3+"/refresh", "", map[string]any{"refresh_token": rt1})
	at2, rt2 := n.Str("access_token"), n.Str("refresh_token")
	if at2 == "" || rt2 == "" || rt2 == rt1 || n.JSON["expires_in_ms"] != float64(300000) {
		t.Fatalf("refresh: %s", n.Body)
	}
	// The old access token is gone at once.
	r = s.Do(t, "GET", v3+"/account/whoami", at1, nil)
	wantErr(t, r, 401, "M_UNKNOWN_TOKEN")
	// Until the new pair is used, the old refresh token may be retried (a
	// lost response); the retry replaces the unused pair.
	n2 := s.MustOK(t, "POST", v3+"/refresh", "", map[string]any{"refresh_token": rt1})
	wantErr(t, s.Do(t, "GET", v3+"/account/whoami", at2, nil), 401, "M_UNKNOWN_TOKEN")
	wantErr(t, s.Do(t, "POST", v3+"/refresh", "", map[string]any{"refresh_token": rt2}), 401, "M_UNKNOWN_TOKEN")
	at3, rt3 := n2.Str("access_token"), n2.Str("refresh_token")
	who := s.MustOK(t, "GET", v3+"/account/whoami", at3, nil)
	if who.Str("user_id") != "@fay:localhost" {
		t.Fatalf("whoami: %s", who.Body)
	}
	// Using the new access token revoked the old refresh token.
	r = s.Do(t, "POST", v3+"/refresh", "", map[string]any{"refresh_token": rt1})
	wantErr(t, r, 401, "M_UNKNOWN_TOKEN")
	if r.JSON["soft_logout"] != false {
		t.Fatalf("soft_logout: %s", r.Body)
	}
	// Refreshing with the new refresh token works and revokes it in turn.
	n3 := s.MustOK(t, "POST", v3+"/refresh", "", map[string]any{"refresh_token": rt3})
	s.MustOK(t, "POST", v3+"/refresh", "", map[string]any{"refresh_token": n3.Str("refresh_token")})
	wantErr(t, s.Do(t, "POST", v3+"/refresh", "", map[string]any{"refresh_token": rt3}), 401, "M_UNKNOWN_TOKEN")

	wantErr(t, s.Do(t, "POST", v3+"/refresh", "", map[string]any{"refresh_token": "syr_nonsense"}), 401, "M_UNKNOWN_TOKEN")
	wantErr(t, s.Do(t, "POST", v3+"/refresh", "", map[string]any{}), 400, "M_MISSING_PARAM")
	wantErr(t, s.Do(t, "POST", v3+"/refresh", "", `{"refresh_token": 1}`), 400, "M_BAD_JSON")
}

func TestAccessTokenExpiry(t *testing.T) {
	s := hstest.Start(t, func(c *config.Config) { c.AccessTokenLifetime = config.Duration{Duration: 1} })
	s.Register(t, "gus")
	r := login(t, s, "gus", "correct horse battery gus", map[string]any{"refresh_token": true})
	// A one-nanosecond lifetime has passed by the next request.
	r2 := s.Do(t, "GET", v3+"/account/whoami", r.Str("access_token"), nil)
	wantErr(t, r2, 401, "M_UNKNOWN_TOKEN")
	if r2.JSON["soft_logout"] != true {
		t.Fatalf("expired token without soft_logout: %s", r2.Body)
	}
	s.MustOK(t, "POST", v3+"/refresh", "", map[string]any{"refresh_token": r.Str("refresh_token")})
	// Without a refresh token, the access token does not expire.
	plain := login(t, s, "gus", "correct horse battery gus", nil)
	s.MustOK(t, "GET", v3+"/account/whoami", plain.Str("access_token"), nil)
}

func TestLogout(t *testing.T) {
	s := hstest.Start(t)
	u := s.Register(t, "hal")
	pw := "correct horse battery hal"
	other := login(t, s, "hal", pw, nil)
	s.MustOK(t, "POST", v3+"/logout", u.Token, map[string]any{})
	wantErr(t, s.Do(t, "GET", v3+"/account/whoami", u.Token, nil), 401, "M_UNKNOWN_TOKEN")
	// The device went with the token.
	ds := s.MustOK(t, "GET", v3+"/devices", other.Str("access_token"), nil)
	if strings.Contains(string(ds.Body), u.DeviceID) {
		t.Fatalf("logged-out device still listed: %s", ds.Body)
	}
	s.MustOK(t, "GET", v3+"/account/whoami", other.Str("access_token"), nil)
	third := login(t, s, "hal", pw, nil)
	s.MustOK(t, "POST", v3+"/logout/all", other.Str("access_token"), nil)
	for _, tok := range []string{other.Str("access_token"), third.Str("access_token")} {
		wantErr(t, s.Do(t, "GET", v3+"/account/whoami", tok, nil), 401, "M_UNKNOWN_TOKEN")
	}
	wantErr(t, s.Do(t, "POST", v3+"/logout", "", nil), 401, "M_MISSING_TOKEN")
	wantErr(t, s.Do(t, "POST", v3+"/logout/all", "bogus", nil), 401, "M_UNKNOWN_TOKEN")
}

func TestChangePassword(t *testing.T) {
	s := hstest.Start(t)
	u := s.Register(t, "ida")
	pw := "correct horse battery ida"
	other := login(t, s, "ida", pw, nil)
	body := map[string]any{"new_password": "new-pw"}
	r := s.Do(t, "POST", v3+"/account/password", u.Token, body)
	if r.Status != 401 || !strings.Contains(string(r.Body), `"stages":["m.login.password"]`) {
		t.Fatalf("password UIA: %d %s", r.Status, r.Body)
	}
	sess := r.Str("session")
	// Wrong password: 401 with errcode, same session.
	body["auth"] = passwordAuth(sess, "ida", "wrong")
	r = s.Do(t, "POST", v3+"/account/password", u.Token, body)
	if r.Status != 401 || r.Errcode() != "M_FORBIDDEN" || r.Str("session") != sess {
		t.Fatalf("wrong password: %d %s", r.Status, r.Body)
	}
	// Naming another user with a wrong password: a new challenge.
	s.Register(t, "jon")
	body["auth"] = passwordAuth(sess, "jon", "wrong")
	r = s.Do(t, "POST", v3+"/account/password", u.Token, body)
	if r.Status != 401 || r.Errcode() != "M_FORBIDDEN" || r.Str("session") != sess {
		t.Fatalf("other user, wrong password: %d %s", r.Status, r.Body)
	}
	// Another user's valid credentials: plain 403, as Synapse answers
	// (Complement TestDeviceManagement "requires UI auth user to match device owner").
	body["auth"] = passwordAuth(sess, "jon", "correct horse battery jon")
	r = s.Do(t, "POST", v3+"/account/password", u.Token, body)
	if r.Status != 403 || r.Errcode() != "M_FORBIDDEN" || r.JSON["flows"] != nil {
		t.Fatalf("other user's password: %d %s", r.Status, r.Body)
	}
	// A session is bound to its user and operation.
	jon := login(t, s, "jon", "correct horse battery jon", nil)
	body["auth"] = passwordAuth(sess, "jon", "correct horse battery jon")
	wantErr(t, s.Do(t, "POST", v3+"/account/password", jon.Str("access_token"), body), 403, "M_FORBIDDEN")
	wantErr(t, s.Do(t, "POST", v3+"/delete_devices", u.Token, map[string]any{"devices": []string{}, "auth": passwordAuth(sess, "ida", pw)}), 403, "M_FORBIDDEN")
	wantErr(t, s.Do(t, "POST", v3+"/account/password", u.Token, map[string]any{"auth": passwordAuth(sess, "ida", pw)}), 400, "M_MISSING_PARAM")
	wantErr(t, s.Do(t, "POST", v3+"/account/password", u.Token, `{"new_password": true}`), 400, "M_BAD_JSON")

	body["auth"] = passwordAuth(sess, "@IDA:localhost", pw)
	s.MustOK(t, "POST", v3+"/account/password", u.Token, body)
	// logout_devices defaults to true: the other device is gone, ours stays.
	wantErr(t, s.Do(t, "GET", v3+"/account/whoami", other.Str("access_token"), nil), 401, "M_UNKNOWN_TOKEN")
	s.MustOK(t, "GET", v3+"/account/whoami", u.Token, nil)
	wantErr(t, login(t, s, "ida", pw, nil), 403, "M_FORBIDDEN")
	keep := login(t, s, "ida", "new-pw", nil)
	if keep.Status != 200 {
		t.Fatalf("login with new password: %s", keep.Body)
	}
	// logout_devices false keeps the other devices.
	r = s.Do(t, "POST", v3+"/account/password", u.Token, map[string]any{"new_password": "third", "logout_devices": false, "auth": passwordAuth("", "ida", "new-pw")})
	if r.Status != 200 {
		t.Fatalf("change without logout: %d %s", r.Status, r.Body)
	}
	s.MustOK(t, "GET", v3+"/account/whoami", keep.Str("access_token"), nil)
}

func TestDeactivate(t *testing.T) {
	s := hstest.Start(t)
	u := s.Register(t, "kim")
	pw := "correct horse battery kim"
	other := login(t, s, "kim", pw, map[string]any{"refresh_token": true})
	hooked := make(chan string, 1)
	s.HS.Accounts.OnDeactivate = func(_ context.Context, id string) { hooked <- id }
	r := s.Do(t, "POST", v3+"/account/deactivate", u.Token, nil)
	if r.Status != 401 || r.Str("session") == "" {
		t.Fatalf("deactivate UIA: %d %s", r.Status, r.Body)
	}
	wantErr(t, s.Do(t, "POST", v3+"/account/deactivate", u.Token, `{"erase": "yes"}`), 400, "M_BAD_JSON")
	// erase is not implemented: refused with a clear error, and nothing is
	// changed (the account still works, the UIA session is not spent).
	wantErr(t, s.Do(t, "POST", v3+"/account/deactivate", u.Token, map[string]any{"erase": true, "auth": passwordAuth(r.Str("session"), "kim", pw)}), 400, "M_INVALID_PARAM")
	s.MustOK(t, "GET", v3+"/account/whoami", u.Token, nil)
	r = s.MustOK(t, "POST", v3+"/account/deactivate", u.Token, map[string]any{"erase": false, "auth": passwordAuth(r.Str("session"), "kim", pw)})
	if r.Str("id_server_unbind_result") != "no-support" {
		t.Fatalf("deactivate: %s", r.Body)
	}
	select {
	case id := <-hooked:
		if id != "@kim:localhost" {
			t.Fatalf("OnDeactivate(%q)", id)
		}
	default:
		t.Fatal("OnDeactivate not called")
	}
	for _, tok := range []string{u.Token, other.Str("access_token")} {
		wantErr(t, s.Do(t, "GET", v3+"/account/whoami", tok, nil), 401, "M_UNKNOWN_TOKEN")
	}
	wantErr(t, s.Do(t, "POST", v3+"/refresh", "", map[string]any{"refresh_token": other.Str("refresh_token")}), 401, "M_UNKNOWN_TOKEN")
	wantErr(t, login(t, s, "kim", pw, nil), 403, "M_USER_DEACTIVATED")
	// The name stays taken.
	wantErr(t, s.Do(t, "POST", v3+"/register", "", map[string]any{"username": "kim", "auth": dummy()}), 400, "M_USER_IN_USE")
}

func TestDevices(t *testing.T) {
	s := hstest.Start(t)
	u := s.Register(t, "lou")
	pw := "correct horse battery lou"
	a := login(t, s, "lou", pw, map[string]any{"device_id": "AAA"})
	login(t, s, "lou", pw, map[string]any{"device_id": "BBB"})
	login(t, s, "lou", pw, map[string]any{"device_id": "CCC"})
	list := s.MustOK(t, "GET", v3+"/devices", u.Token, nil)
	devs, _ := list.JSON["devices"].([]any)
	if len(devs) != 4 {
		t.Fatalf("devices: %s", list.Body)
	}
	// Rename.
	s.MustOK(t, "PUT", v3+"/devices/AAA", u.Token, map[string]any{"display_name": "Work"})
	if d := s.MustOK(t, "GET", v3+"/devices/AAA", u.Token, nil); d.Str("display_name") != "Work" || d.Str("device_id") != "AAA" {
		t.Fatalf("renamed: %s", d.Body)
	}
	s.MustOK(t, "PUT", v3+"/devices/AAA", u.Token, map[string]any{})
	wantErr(t, s.Do(t, "PUT", v3+"/devices/AAA", u.Token, map[string]any{"display_name": strings.Repeat("x", 101)}), 400, "M_INVALID_PARAM")
	wantErr(t, s.Do(t, "PUT", v3+"/devices/AAA", u.Token, `{"display_name": 3}`), 400, "M_BAD_JSON")
	wantErr(t, s.Do(t, "PUT", v3+"/devices/NOPE", u.Token, map[string]any{"display_name": "x"}), 404, "M_NOT_FOUND")
	wantErr(t, s.Do(t, "PUT", v3+"/devices/NOPE", u.Token, map[string]any{}), 404, "M_NOT_FOUND")
	wantErr(t, s.Do(t, "GET", v3+"/devices/NOPE", u.Token, nil), 404, "M_NOT_FOUND")
	// Another user's device is not visible.
	other := s.Register(t, "max")
	wantErr(t, s.Do(t, "GET", v3+"/devices/AAA", other.Token, nil), 404, "M_NOT_FOUND")
	wantErr(t, s.Do(t, "GET", v3+"/devices", "", nil), 401, "M_MISSING_TOKEN")

	// DELETE needs the password; the deleted device's token stops working.
	r := s.Do(t, "DELETE", v3+"/devices/AAA", u.Token, nil)
	if r.Status != 401 || r.Str("session") == "" {
		t.Fatalf("delete UIA: %d %s", r.Status, r.Body)
	}
	sess := r.Str("session")
	// The session is bound to this device.
	wantErr(t, s.Do(t, "DELETE", v3+"/devices/BBB", u.Token, map[string]any{"auth": passwordAuth(sess, "lou", pw)}), 403, "M_FORBIDDEN")
	r = s.Do(t, "DELETE", v3+"/devices/AAA", u.Token, map[string]any{"auth": passwordAuth(sess, "lou", "nope")})
	if r.Status != 401 || r.Errcode() != "M_FORBIDDEN" {
		t.Fatalf("wrong password: %d %s", r.Status, r.Body)
	}
	s.MustOK(t, "DELETE", v3+"/devices/AAA", u.Token, map[string]any{"auth": passwordAuth(sess, "lou", pw)})
	wantErr(t, s.Do(t, "GET", v3+"/account/whoami", a.Str("access_token"), nil), 401, "M_UNKNOWN_TOKEN")
	wantErr(t, s.Do(t, "GET", v3+"/devices/AAA", u.Token, nil), 404, "M_NOT_FOUND")
	// Other users cannot delete our devices: they only delete their own (no-op).
	s.MustOK(t, "POST", v3+"/delete_devices", other.Token, map[string]any{"devices": []string{"BBB"}, "auth": passwordAuth("", "max", "correct horse battery max")})
	s.MustOK(t, "GET", v3+"/devices/BBB", u.Token, nil)

	// delete_devices.
	wantErr(t, s.Do(t, "POST", v3+"/delete_devices", u.Token, map[string]any{}), 400, "M_MISSING_PARAM")
	wantErr(t, s.Do(t, "POST", v3+"/delete_devices", u.Token, `{"devices": "BBB"}`), 400, "M_BAD_JSON")
	wantErr(t, s.Do(t, "POST", v3+"/delete_devices", u.Token, map[string]any{"devices": make([]string, 1001)}), 400, "M_INVALID_PARAM")
	r = s.Do(t, "POST", v3+"/delete_devices", u.Token, map[string]any{"devices": []string{"BBB", "CCC", "UNKNOWN"}})
	if r.Status != 401 {
		t.Fatalf("delete_devices UIA: %d %s", r.Status, r.Body)
	}
	// Changing the list during the session is refused.
	wantErr(t, s.Do(t, "POST", v3+"/delete_devices", u.Token, map[string]any{"devices": []string{"BBB", "CCC", u.DeviceID}, "auth": passwordAuth(r.Str("session"), "lou", pw)}), 403, "M_FORBIDDEN")
	s.MustOK(t, "POST", v3+"/delete_devices", u.Token, map[string]any{"devices": []string{"BBB", "CCC", "UNKNOWN"}, "auth": passwordAuth(r.Str("session"), "lou", pw)})
	list = s.MustOK(t, "GET", v3+"/devices", u.Token, nil)
	if devs, _ := list.JSON["devices"].([]any); len(devs) != 1 {
		t.Fatalf("after delete_devices: %s", list.Body)
	}
}

func TestRateLimit(t *testing.T) {
	s := hstest.Start(t, func(c *config.Config) { c.RateLimits = true; c.LoginRatePerSecond = 0.001; c.LoginRateBurst = 3 })
	// Registration takes one token per request from the IP bucket.
	for i := 0; i < 3; i++ {
		s.MustOK(t, "POST", v3+"/register", "", map[string]any{"username": "rl" + string(rune('a'+i)), "password": "pw", "auth": dummy()})
	}
	r := s.Do(t, "POST", v3+"/register", "", map[string]any{"username": "rld", "auth": dummy()})
	wantErr(t, r, 429, "M_LIMIT_EXCEEDED")
	if ms, _ := r.JSON["retry_after_ms"].(float64); ms < 1 {
		t.Fatalf("retry_after_ms: %s", r.Body)
	}
	// /login and /register share the per-IP bucket, so login is limited too.
	wantErr(t, login(t, s, "rla", "pw", nil), 429, "M_LIMIT_EXCEEDED")
}

func TestLoginRateLimitPerAccount(t *testing.T) {
	s := hstest.Start(t, func(c *config.Config) { c.RateLimits = true; c.LoginRatePerSecond = 0.001; c.LoginRateBurst = 2 })
	s.CreateUser(t, "victim")
	// Failures spend the account's tokens (the IP bucket also has 2).
	wantErr(t, login(t, s, "victim", "guess1", nil), 403, "M_FORBIDDEN")
	wantErr(t, login(t, s, "victim", "guess2", nil), 403, "M_FORBIDDEN")
	r := login(t, s, "victim", "guess3", nil)
	wantErr(t, r, 429, "M_LIMIT_EXCEEDED")
	if ms, _ := r.JSON["retry_after_ms"].(float64); ms < 1 {
		t.Fatalf("retry_after_ms: %s", r.Body)
	}
}

func TestSharedSecretRegistration(t *testing.T) {
	s := hstest.Start(t)
	const path = "/_synapse/admin/v1/register"
	nonce := func() string { return s.MustOK(t, "GET", path, "", nil).Str("nonce") }
	mac := func(n, user, pw string, admin bool) string {
		return accounts.SharedSecretMAC("test-shared-secret", n, user, pw, admin, nil)
	}
	n := nonce()
	r := s.MustOK(t, "POST", path, "", map[string]any{"nonce": n, "username": "root", "password": "pw", "admin": true, "mac": mac(n, "root", "pw", true)})
	if r.Str("user_id") != "@root:localhost" || r.Str("access_token") == "" {
		t.Fatalf("shared-secret register: %s", r.Body)
	}
	s.MustOK(t, "GET", v3+"/account/whoami", r.Str("access_token"), nil)
	if u, err := s.HS.Store.GetUser(t.Context(), "@root:localhost"); err != nil || !u.IsAdmin {
		t.Fatalf("admin flag: %+v %v", u, err)
	}
	// Reused nonce.
	wantErr(t, s.Do(t, "POST", path, "", map[string]any{"nonce": n, "username": "root2", "password": "pw", "mac": mac(n, "root2", "pw", false)}), 400, "M_UNKNOWN")
	// Bad MAC (admin flag flipped), and the nonce is spent by the attempt.
	n = nonce()
	wantErr(t, s.Do(t, "POST", path, "", map[string]any{"nonce": n, "username": "eve", "password": "pw", "admin": true, "mac": mac(n, "eve", "pw", false)}), 403, "M_FORBIDDEN")
	wantErr(t, s.Do(t, "POST", path, "", map[string]any{"nonce": n, "username": "eve", "password": "pw", "mac": mac(n, "eve", "pw", false)}), 400, "M_UNKNOWN")
	// Name rules and taken names.
	n = nonce()
	wantErr(t, s.Do(t, "POST", path, "", map[string]any{"nonce": n, "username": "root", "password": "pw", "mac": mac(n, "root", "pw", false)}), 400, "M_USER_IN_USE")
	n = nonce()
	wantErr(t, s.Do(t, "POST", path, "", map[string]any{"nonce": n, "username": "b d", "password": "pw", "mac": mac(n, "b d", "pw", false)}), 400, "M_INVALID_USERNAME")
	wantErr(t, s.Do(t, "POST", path, "", map[string]any{"username": "x", "password": "pw", "mac": "00"}), 400, "M_BAD_JSON")
	wantErr(t, s.Do(t, "POST", path, "", map[string]any{"nonce": "n", "password": "pw", "mac": "00"}), 400, "M_BAD_JSON")
	wantErr(t, s.Do(t, "POST", path, "", map[string]any{"nonce": "n", "username": "x", "mac": "00"}), 400, "M_BAD_JSON")
	wantErr(t, s.Do(t, "POST", path, "", map[string]any{"nonce": "n", "username": "x", "password": "pw"}), 400, "M_BAD_JSON")
	wantErr(t, s.Do(t, "POST", path, "", "nope"), 400, "M_NOT_JSON")

	off := hstest.Start(t, func(c *config.Config) { c.RegistrationSharedSecret = "" })
	wantErr(t, off.Do(t, "GET", path, "", nil), 400, "M_UNKNOWN")
	wantErr(t, off.Do(t, "POST", path, "", map[string]any{"nonce": "n"}), 400, "M_UNKNOWN")
}
