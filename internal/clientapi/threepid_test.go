package clientapi_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"conclave/internal/config"
	"conclave/internal/homeserver/hstest"
	"conclave/internal/mail/mailtest"
)

// emailServer starts a server of a circle whose map gives ministry.fr (and
// its subdomains) to it and everything else to ext.example, with mail
// going to a real SMTP server that keeps what it receives.
func emailServer(t *testing.T, opts ...hstest.Option) (*hstest.Server, *mailtest.Server) {
	t.Helper()
	smtp := mailtest.Start(t, mailtest.Options{})
	domains := filepath.Join(t.TempDir(), "domains")
	os.WriteFile(domains, []byte("ministry.fr localhost\n*.ministry.fr localhost\nother.fr other.example\n* ext.example\n"), 0o600)
	all := append([]hstest.Option{func(c *config.Config) {
		c.EmailDomains = domains
		c.SMTPURL, c.SMTPFrom, c.PublicBaseURL = smtp.URL, "Conclave <noreply@ministry.fr>", "https://matrix.ministry.fr/"
	}}, opts...)
	return hstest.Start(t, all...), smtp
}

var (
	linkRE = regexp.MustCompile(`https://matrix\.ministry\.fr(/\S+)`)
	codeRE = regexp.MustCompile(`code: (\d{6})`)
)

// fromMail returns the path and query of the link in a mail, and its code.
func fromMail(t *testing.T, m mailtest.Mail) (link, code string) {
	t.Helper()
	l, c := linkRE.FindStringSubmatch(m.Text), codeRE.FindStringSubmatch(m.Text)
	if l == nil || c == nil {
		t.Fatalf("no link or code in the mail:\n%s", m.Text)
	}
	return l[1], c[1]
}

func requestToken(t *testing.T, s *hstest.Server, path, email, secret string, attempt int) *hstest.Response {
	t.Helper()
	return s.Do(t, "POST", "/_matrix/client/v3"+path, "", map[string]any{"email": email, "client_secret": secret, "send_attempt": attempt})
}

func emailAuth(sid, secret, session string) map[string]any {
	return map[string]any{"type": "m.login.email.identity", "session": session, "threepid_creds": map[string]string{"sid": sid, "client_secret": secret}}
}

// Registration needs a verified address of this server: the code arrives by
// mail, the link validates it, and the account is named after the address.
func TestRegistrationByEmail(t *testing.T) {
	s, smtp := emailServer(t)
	r := s.Do(t, "POST", "/_matrix/client/v3/register", "", map[string]any{"password": "Secret-123"})
	if r.Status != 401 || string(mustJSON(r.JSON["flows"])) != `[{"stages":["m.login.email.identity"]}]` {
		t.Fatalf("flows: %d %s", r.Status, r.Body)
	}
	session := r.Str("session")
	expectErr(t, s.Do(t, "POST", "/_matrix/client/v3/register?kind=guest", "", map[string]any{}), http.StatusForbidden, "M_GUEST_ACCESS_FORBIDDEN")

	// Not this server's addresses.
	expectErr(t, requestToken(t, s, "/register/email/requestToken", "a@other.fr", "cs1", 1), http.StatusForbidden, "M_THREEPID_DENIED")
	expectErr(t, requestToken(t, s, "/register/email/requestToken", "a@gmail.com", "cs1", 1), http.StatusForbidden, "M_THREEPID_DENIED")
	expectErr(t, requestToken(t, s, "/register/email/requestToken", "Name <a@ministry.fr>", "cs1", 1), http.StatusBadRequest, "M_INVALID_PARAM")
	expectErr(t, requestToken(t, s, "/register/email/requestToken", "a@ministry.fr", "bad secret!", 1), http.StatusBadRequest, "M_INVALID_PARAM")

	r = requestToken(t, s, "/register/email/requestToken", "Jean.Martin@Ministry.fr", "secret-1", 1)
	if r.Status != 200 || r.Str("sid") == "" || r.Str("submit_url") != "https://matrix.ministry.fr/_matrix/client/unstable/registration/email/submit_token" {
		t.Fatalf("requestToken: %d %s", r.Status, r.Body)
	}
	sid := r.Str("sid")
	// The same attempt again: the same session, no second mail.
	if r := requestToken(t, s, "/register/email/requestToken", "jean.martin@ministry.fr", "secret-1", 1); r.Str("sid") != sid {
		t.Fatalf("retry: %s", r.Body)
	}
	m := smtp.Wait(t, "jean.martin@ministry.fr", 1)
	if m.Subject != "Confirm your e-mail address" || m.From != "noreply@ministry.fr" {
		t.Errorf("mail: %q from %q", m.Subject, m.From)
	}
	link, code := fromMail(t, m)

	// Before the link is opened, the stage is not done (clients poll).
	r = s.Do(t, "POST", "/_matrix/client/v3/register", "", map[string]any{"password": "Secret-123", "auth": emailAuth(sid, "secret-1", session)})
	if r.Status != 401 || r.Errcode() != "M_UNAUTHORIZED" {
		t.Fatalf("unvalidated: %d %s", r.Status, r.Body)
	}
	// A wrong code, a wrong secret.
	wrong := "000000"
	if code == wrong {
		wrong = "000001"
	}
	expectErr(t, s.Do(t, "POST", "/_matrix/client/unstable/registration/email/submit_token", "", map[string]string{"sid": sid, "client_secret": "secret-1", "token": wrong}), http.StatusBadRequest, "M_TOKEN_INCORRECT")
	expectErr(t, s.Do(t, "POST", "/_matrix/client/unstable/registration/email/submit_token", "", map[string]string{"sid": sid, "client_secret": "secret-2", "token": code}), http.StatusBadRequest, "M_THREEPID_AUTH_FAILED")

	// The link, opened in a browser.
	res, err := http.Get(s.URL + link)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("link: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}

	r = s.MustOK(t, "POST", "/_matrix/client/v3/register", "", map[string]any{"username": "ignored", "password": "Secret-123", "auth": emailAuth(sid, "secret-1", session)})
	userID, token := r.Str("user_id"), r.Str("access_token")
	if userID != "@jean.martin-ministry.fr:localhost" {
		t.Fatalf("user ID %q", userID)
	}
	r = s.MustOK(t, "GET", "/_matrix/client/v3/profile/"+url.PathEscape(userID)+"/displayname", "", nil)
	if r.Str("displayname") != "Jean Martin [Ministry]" {
		t.Errorf("display name %q", r.Str("displayname"))
	}
	r = s.MustOK(t, "GET", "/_matrix/client/v3/account/3pid", token, nil)
	if tp, _ := r.JSON["threepids"].([]any); len(tp) != 1 || tp[0].(map[string]any)["address"] != "jean.martin@ministry.fr" || tp[0].(map[string]any)["medium"] != "email" {
		t.Fatalf("3pids: %s", r.Body)
	}
	// The address is taken now.
	expectErr(t, requestToken(t, s, "/register/email/requestToken", "jean.martin@ministry.fr", "secret-3", 1), http.StatusBadRequest, "M_THREEPID_IN_USE")
	// The session proved one registration only.
	r = s.Do(t, "POST", "/_matrix/client/v3/register", "", map[string]any{"password": "Secret-123", "auth": emailAuth(sid, "secret-1", "")})
	expectErr(t, r, http.StatusBadRequest, "M_THREEPID_IN_USE")
}

// The same validated address sent several times at once makes one account.
func TestRegistrationByEmailSentTwice(t *testing.T) {
	s, smtp := emailServer(t)
	sid := s.MustOK(t, "POST", "/_matrix/client/v3/register/email/requestToken", "", map[string]any{"email": "dup@ministry.fr", "client_secret": "d", "send_attempt": 1}).Str("sid")
	_, code := fromMail(t, smtp.Wait(t, "dup@ministry.fr", 1))
	s.MustOK(t, "POST", threepidSubmit, "", map[string]string{"sid": sid, "client_secret": "d", "token": code})
	const n = 6
	statuses := make(chan int, n)
	for i := 0; i < n; i++ {
		go func() {
			statuses <- s.Do(t, "POST", "/_matrix/client/v3/register", "", map[string]any{"password": "Secret-123", "auth": emailAuth(sid, "d", "")}).Status
		}()
	}
	ok := 0
	for i := 0; i < n; i++ {
		if <-statuses == 200 {
			ok++
		}
	}
	if ok != 1 {
		t.Fatalf("%d accounts made from one address", ok)
	}
	if r := s.Do(t, "GET", "/_matrix/client/v3/profile/@dup-ministry.fr1:localhost", "", nil); r.Status != http.StatusNotFound {
		t.Fatalf("a numbered second account: %d %s", r.Status, r.Body)
	}
}

const threepidSubmit = "/_matrix/client/unstable/registration/email/submit_token"

// A forgotten password is reset by proving the address by mail; every
// device is logged out.
func TestPasswordResetByEmail(t *testing.T) {
	s, smtp := emailServer(t)
	token := registerByEmail(t, s, smtp, "anne@ministry.fr", "Old-pass-1")

	expectErr(t, requestToken(t, s, "/account/password/email/requestToken", "nobody@ministry.fr", "cs", 1), http.StatusBadRequest, "M_THREEPID_NOT_FOUND")
	r := s.MustOK(t, "POST", "/_matrix/client/v3/account/password/email/requestToken", "", map[string]any{"email": "anne@ministry.fr", "client_secret": "reset-1", "send_attempt": 1})
	sid := r.Str("sid")
	m := smtp.Wait(t, "anne@ministry.fr", 2)
	if m.Subject != "Reset your password" {
		t.Errorf("subject %q", m.Subject)
	}
	_, code := fromMail(t, m)
	// Not validated yet.
	r = s.Do(t, "POST", "/_matrix/client/v3/account/password", "", map[string]any{"new_password": "New-pass-2", "auth": emailAuth(sid, "reset-1", "")})
	if r.Status != 401 || r.Errcode() != "M_UNAUTHORIZED" {
		t.Fatalf("unvalidated: %d %s", r.Status, r.Body)
	}
	session := r.Str("session")
	s.MustOK(t, "POST", "/_synapse/client/password_reset/email/submit_token", "", map[string]string{"sid": sid, "client_secret": "reset-1", "token": code})
	s.MustOK(t, "POST", "/_matrix/client/v3/account/password", "", map[string]any{"new_password": "New-pass-2", "auth": emailAuth(sid, "reset-1", session)})
	expectErr(t, s.Do(t, "GET", "/_matrix/client/v3/account/whoami", token, nil), http.StatusUnauthorized, "M_UNKNOWN_TOKEN")
	login := func(pw string) *hstest.Response {
		return s.Do(t, "POST", "/_matrix/client/v3/login", "", map[string]any{"type": "m.login.password", "identifier": map[string]string{"type": "m.id.user", "user": "anne-ministry.fr"}, "password": pw})
	}
	if r := login("Old-pass-1"); r.Status != http.StatusForbidden {
		t.Fatalf("old password: %d %s", r.Status, r.Body)
	}
	if r := login("New-pass-2"); r.Status != 200 {
		t.Fatalf("new password: %d %s", r.Status, r.Body)
	}
	// Signing in with the address, as Tchap's clients do.
	byEmail := func(addr string) *hstest.Response {
		return s.Do(t, "POST", "/_matrix/client/v3/login", "", map[string]any{"type": "m.login.password", "identifier": map[string]string{"type": "m.id.thirdparty", "medium": "email", "address": addr}, "password": "New-pass-2"})
	}
	if r := byEmail("Anne@ministry.fr"); r.Status != 200 || r.Str("user_id") != "@anne-ministry.fr:localhost" {
		t.Fatalf("login by address: %d %s", r.Status, r.Body)
	}
	expectErr(t, byEmail("nobody@ministry.fr"), http.StatusForbidden, "M_FORBIDDEN")
	r = s.MustOK(t, "GET", "/_matrix/client/v3/capabilities", token2(t, s), nil)
	if c, _ := r.JSON["capabilities"].(map[string]any); c["m.3pid_changes"].(map[string]any)["enabled"] != true {
		t.Errorf("capabilities: %s", r.Body)
	}
}

// token2 logs anne in again (her first token went with the reset).
func token2(t *testing.T, s *hstest.Server) string {
	t.Helper()
	return s.MustOK(t, "POST", "/_matrix/client/v3/login", "", map[string]any{"type": "m.login.password", "identifier": map[string]string{"type": "m.id.user", "user": "anne-ministry.fr"}, "password": "New-pass-2"}).Str("access_token")
}

// registerByEmail goes through the whole e-mail registration.
func registerByEmail(t *testing.T, s *hstest.Server, smtp *mailtest.Server, email, password string) string {
	t.Helper()
	n := smtp.Count(email)
	r := s.MustOK(t, "POST", "/_matrix/client/v3/register/email/requestToken", "", map[string]any{"email": email, "client_secret": "reg-" + email[:1], "send_attempt": 1})
	sid := r.Str("sid")
	_, code := fromMail(t, smtp.Wait(t, email, n+1))
	s.MustOK(t, "POST", "/_matrix/client/unstable/registration/email/submit_token", "", map[string]string{"sid": sid, "client_secret": "reg-" + email[:1], "token": code})
	r = s.MustOK(t, "POST", "/_matrix/client/v3/register", "", map[string]any{"password": password, "auth": emailAuth(sid, "reg-"+email[:1], "")})
	return r.Str("access_token")
}

// An account adds a second address of its server, with its password, and
// removes it.
func TestAddAndDeleteThreepid(t *testing.T) {
	s, smtp := emailServer(t)
	token := registerByEmail(t, s, smtp, "paul@ministry.fr", "Pass-word-1")
	token2 := registerByEmail(t, s, smtp, "zoe@ministry.fr", "Pass-word-2")
	expectErr(t, requestToken(t, s, "/account/3pid/email/requestToken", "zoe@ministry.fr", "add-1", 1), http.StatusBadRequest, "M_THREEPID_IN_USE")
	expectErr(t, requestToken(t, s, "/account/3pid/email/requestToken", "paul@other.fr", "add-1", 1), http.StatusForbidden, "M_THREEPID_DENIED")
	r := s.MustOK(t, "POST", "/_matrix/client/v3/account/3pid/email/requestToken", "", map[string]any{"email": "paul@dgfip.ministry.fr", "client_secret": "add-1", "send_attempt": 1})
	sid := r.Str("sid")
	link, _ := fromMail(t, smtp.Wait(t, "paul@dgfip.ministry.fr", 1))
	passAuth := func(user, pw, session string) map[string]any {
		return map[string]any{"type": "m.login.password", "session": session, "identifier": map[string]string{"type": "m.id.user", "user": user}, "password": pw}
	}
	r = s.Do(t, "POST", "/_matrix/client/v3/account/3pid/add", token, map[string]any{"sid": sid, "client_secret": "add-1"})
	if r.Status != 401 {
		t.Fatalf("no auth: %d %s", r.Status, r.Body)
	}
	// Not validated yet.
	expectErr(t, s.Do(t, "POST", "/_matrix/client/v3/account/3pid/add", token, map[string]any{"sid": sid, "client_secret": "add-1", "auth": passAuth("paul-ministry.fr", "Pass-word-1", r.Str("session"))}), http.StatusBadRequest, "M_THREEPID_AUTH_FAILED")
	if res, err := http.Get(s.URL + link); err != nil || res.StatusCode != 200 {
		t.Fatalf("link: %v", err)
	}
	// Another account cannot use Paul's session.
	r = s.Do(t, "POST", "/_matrix/client/v3/account/3pid/add", token2, map[string]any{"sid": sid, "client_secret": "add-1"})
	r = s.Do(t, "POST", "/_matrix/client/v3/account/3pid/add", token2, map[string]any{"sid": sid, "client_secret": "wrong", "auth": passAuth("zoe-ministry.fr", "Pass-word-2", r.Str("session"))})
	expectErr(t, r, http.StatusBadRequest, "M_THREEPID_AUTH_FAILED")
	r = s.Do(t, "POST", "/_matrix/client/v3/account/3pid/add", token, map[string]any{"sid": sid, "client_secret": "add-1"})
	s.MustOK(t, "POST", "/_matrix/client/v3/account/3pid/add", token, map[string]any{"sid": sid, "client_secret": "add-1", "auth": passAuth("paul-ministry.fr", "Pass-word-1", r.Str("session"))})
	r = s.MustOK(t, "GET", "/_matrix/client/v3/account/3pid", token, nil)
	if n := len(r.JSON["threepids"].([]any)); n != 2 {
		t.Fatalf("3pids: %s", r.Body)
	}
	expectErr(t, s.Do(t, "POST", "/_matrix/client/v3/account/3pid/delete", token2, map[string]any{"medium": "email", "address": "paul@dgfip.ministry.fr"}), http.StatusNotFound, "M_NOT_FOUND")
	r = s.MustOK(t, "POST", "/_matrix/client/v3/account/3pid/delete", token, map[string]any{"medium": "email", "address": "Paul@DGFIP.ministry.fr"})
	if r.Str("id_server_unbind_result") != "success" {
		t.Errorf("delete: %s", r.Body)
	}
	r = s.MustOK(t, "GET", "/_matrix/client/v3/account/3pid", token, nil)
	if n := len(r.JSON["threepids"].([]any)); n != 1 {
		t.Fatalf("3pids after delete: %s", r.Body)
	}
	// Binding (discoverability): the validated session adds it back.
	s.MustOK(t, "POST", "/_matrix/client/v3/account/3pid/bind", token, map[string]any{"sid": sid, "client_secret": "add-1", "id_server": "matrix.ministry.fr"})
	expectErr(t, s.Do(t, "POST", "/_matrix/client/v3/account/3pid/bind", token2, map[string]any{"sid": sid, "client_secret": "add-1"}), http.StatusBadRequest, "M_THREEPID_IN_USE")
	r = s.MustOK(t, "GET", "/_matrix/client/v3/account/3pid", token, nil)
	if n := len(r.JSON["threepids"].([]any)); n != 2 {
		t.Fatalf("3pids after bind: %s", r.Body)
	}
	if r := s.MustOK(t, "POST", "/_matrix/client/v3/account/3pid/unbind", token, map[string]any{"medium": "email", "address": "paul@dgfip.ministry.fr"}); r.Str("id_server_unbind_result") != "no-support" {
		t.Errorf("unbind: %s", r.Body)
	}
}

// Validation mails are bounded per address, and a code dies after five
// wrong tries.
func TestValidationLimits(t *testing.T) {
	s, smtp := emailServer(t, func(c *config.Config) { c.RateLimits = true; c.LoginRateBurst = 100; c.LoginRatePerSecond = 100 })
	for i := 1; i <= 3; i++ {
		s.MustOK(t, "POST", "/_matrix/client/v3/register/email/requestToken", "", map[string]any{"email": "x@ministry.fr", "client_secret": "cs", "send_attempt": i})
	}
	expectErr(t, requestToken(t, s, "/register/email/requestToken", "X@ministry.fr", "cs", 4), http.StatusTooManyRequests, "M_LIMIT_EXCEEDED")
	m := smtp.Wait(t, "x@ministry.fr", 3)
	_, code := fromMail(t, m)
	sid := s.MustOK(t, "POST", "/_matrix/client/v3/register/email/requestToken", "", map[string]any{"email": "y@ministry.fr", "client_secret": "cs", "send_attempt": 1}).Str("sid")
	_, code = fromMail(t, smtp.Wait(t, "y@ministry.fr", 1))
	wrong := "999999"
	if code == wrong {
		wrong = "999998"
	}
	for i := 0; i < 5; i++ {
		expectErr(t, s.Do(t, "POST", "/_matrix/client/unstable/registration/email/submit_token", "", map[string]string{"sid": sid, "client_secret": "cs", "token": wrong}), http.StatusBadRequest, "M_TOKEN_INCORRECT")
	}
	expectErr(t, s.Do(t, "POST", "/_matrix/client/unstable/registration/email/submit_token", "", map[string]string{"sid": sid, "client_secret": "cs", "token": code}), http.StatusBadRequest, "M_SESSION_EXPIRED")
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// An invite by e-mail goes through the room's rules: a direct room takes one
// at most, and only members with the power to invite may send one.
func TestInviteByEmailFollowsTheRoomsRules(t *testing.T) {
	s, smtp := emailServer(t)
	alice := registerByEmail(t, s, smtp, "alice@ministry.fr", "Pass-word-1")
	bob := registerByEmail(t, s, smtp, "bob@ministry.fr", "Pass-word-2")
	invite := func(token, roomID, addr string) *hstest.Response {
		return s.Do(t, "POST", hstest.Path("/rooms/%s/invite", roomID), token, map[string]string{"id_server": "matrix.ministry.fr", "medium": "email", "address": addr})
	}
	direct := s.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice, map[string]any{"is_direct": true, "preset": "trusted_private_chat"}).Str("room_id")
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/invite", direct), alice, map[string]string{"medium": "email", "address": "new.colleague@ministry.fr"})
	// The person is told, by the server the address belongs to (this one).
	if m := smtp.Wait(t, "new.colleague@ministry.fr", 1); m.Subject != "You are invited to localhost" || !strings.Contains(m.Text, "@alice-ministry.fr:localhost invited you") {
		t.Fatalf("invitation: %q\n%s", m.Subject, m.Text)
	}
	expectErr(t, invite(alice, direct, "other.colleague@ministry.fr"), http.StatusForbidden, "M_FORBIDDEN")
	if r := info(t, s, "new.colleague@ministry.fr"); r.JSON["invited"] != true {
		t.Fatalf("info: %s", r.Body)
	}
	// Not a member; then a member without the power to invite.
	room := s.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice, map[string]any{"invite": []string{"@bob-ministry.fr:localhost"},
		"power_level_content_override": map[string]any{"invite": 50}}).Str("room_id")
	expectErr(t, invite(bob, room, "x@ministry.fr"), http.StatusForbidden, "M_FORBIDDEN")
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/join", room), bob, map[string]any{})
	expectErr(t, invite(bob, room, "x@ministry.fr"), http.StatusForbidden, "M_FORBIDDEN")
	if r := info(t, s, "x@ministry.fr"); r.JSON["invited"] != false {
		t.Fatalf("a refused invite was recorded: %s", r.Body)
	}
	// An address outside the circle's map and a bad one.
	expectErr(t, invite(alice, room, "not an address"), http.StatusBadRequest, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "POST", hstest.Path("/rooms/%s/invite", room), alice, map[string]string{"medium": "msisdn", "address": "33600000000"}), http.StatusBadRequest, "M_THREEPID_MEDIUM_NOT_SUPPORTED")
}
