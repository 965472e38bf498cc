package clientapi_test

import (
	"context"
	"html"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"

	"conclave/internal/config"
	"conclave/internal/homeserver/hstest"
	"conclave/internal/sso"
	"conclave/internal/sso/ssotest"
	"conclave/internal/store/storetest/pgtest"
)

// User-interactive authentication by single sign-on: the m.login.sso stage
// and its fallback page, against the real provider of the SSO tests.

// ssoAccount signs in through the provider as u (a fresh browser) and
// returns a device of the account.
func ssoAccount(t *testing.T, s *hstest.Server, p *ssotest.Provider, u ssotest.User) *hstest.User {
	t.Helper()
	p.SignIn(u)
	r := tokenLogin(t, s, ssoToken(t, browser(s)))
	if r.Status != 200 {
		t.Fatalf("sso login: %d %s", r.Status, r.Body)
	}
	return &hstest.User{UserID: r.Str("user_id"), DeviceID: r.Str("device_id"), Token: r.Str("access_token")}
}

// flowsOf is a 401 challenge's flows, as JSON.
func flowsOf(t *testing.T, r *hstest.Response) string {
	t.Helper()
	if r.Status != 401 || r.Str("session") == "" {
		t.Fatalf("expected a UIA challenge, got %d %s", r.Status, r.Body)
	}
	return string(mustJSON(r.JSON["flows"]))
}

const ssoOnlyFlows = `[{"stages":["m.login.sso"]}]`

func fallbackURL(session string) string {
	return ssoBase + "/_matrix/client/v3/auth/m.login.sso/fallback/web?session=" + url.QueryEscape(session)
}

func browse(t *testing.T, b *http.Client, u string) (int, string) {
	t.Helper()
	res, err := b.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body)
}

// confirmLink opens the fallback page of session in browser b and returns
// the link to the provider it offers.
func confirmLink(t *testing.T, b *http.Client, session string) string {
	t.Helper()
	code, body := browse(t, b, fallbackURL(session))
	if code != 200 || !strings.Contains(body, "Continue with ProConnect") {
		t.Fatalf("fallback page: %d %s", code, body)
	}
	m := regexp.MustCompile(`href="([^"]+)"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no link: %s", body)
	}
	return html.UnescapeString(m[1])
}

// confirmSSO runs the browser through the fallback page and the provider
// and returns the last page.
func confirmSSO(t *testing.T, s *hstest.Server, session string) (int, string) {
	t.Helper()
	b := browser(s)
	return browse(t, b, confirmLink(t, b, session))
}

func TestSSOUIADeleteDeviceAndCrossSigning(t *testing.T) {
	s, p := ssoServer(t, func(c *config.Config) { c.PasswordLogin = false })
	jean := ssotest.User{Subject: "sub-jean", Email: "jean.martin@x.gouv.fr", EmailVerified: true}
	d1 := ssoAccount(t, s, p, jean)
	d2 := ssoAccount(t, s, p, jean)
	if d1.UserID != d2.UserID || d1.DeviceID == d2.DeviceID {
		t.Fatalf("two devices of one account: %+v %+v", d1, d2)
	}
	del := hstest.Path("/devices/%s", d2.DeviceID)
	r := s.Do(t, "DELETE", del, d1.Token, map[string]any{})
	if got := flowsOf(t, r); got != ssoOnlyFlows {
		t.Fatalf("flows of an SSO-only account: %s", got)
	}
	session := r.Str("session")
	// Before the confirmation, the session alone does nothing.
	if got := flowsOf(t, s.Do(t, "DELETE", del, d1.Token, map[string]any{"auth": map[string]any{"session": session}})); got != ssoOnlyFlows {
		t.Fatalf("flows: %s", got)
	}
	code, body := confirmSSO(t, s, session)
	if code != 200 || !strings.Contains(body, "window.onAuthDone()") || !strings.Contains(body, `postMessage("authDone", "*")`) {
		t.Fatalf("success page: %d %s", code, body)
	}
	// Another operation cannot use the session.
	expectErr(t, s.Do(t, "POST", hstest.Path("/delete_devices"), d1.Token, map[string]any{"devices": []string{d1.DeviceID},
		"auth": map[string]any{"session": session}}), 403, "M_FORBIDDEN")
	s.MustOK(t, "DELETE", del, d1.Token, map[string]any{"auth": map[string]any{"session": session}})
	expectErr(t, s.Do(t, "GET", del, d1.Token, nil), 404, "M_NOT_FOUND")
	// Used once.
	expectErr(t, s.Do(t, "DELETE", del, d1.Token, map[string]any{"auth": map[string]any{"session": session}}), 400, "M_UNKNOWN")

	// Cross-signing: the first upload needs nothing; a new master key
	// needs the user again (Element's "reset cross-signing").
	dev := newDevice(t, d1)
	path := hstest.Path("/keys/device_signing/upload")
	cs := newCS(t)
	s.MustOK(t, "POST", path, dev.Token, cs.body(t, dev.UserID))
	cs2 := newCS(t)
	r = s.Do(t, "POST", path, dev.Token, cs2.body(t, dev.UserID))
	if got := flowsOf(t, r); got != ssoOnlyFlows {
		t.Fatalf("cross-signing flows: %s", got)
	}
	if code, body := confirmSSO(t, s, r.Str("session")); code != 200 || !strings.Contains(body, "onAuthDone") {
		t.Fatalf("success page: %d %s", code, body)
	}
	// Element sends the stage type with the session; both forms do.
	b := cs2.body(t, dev.UserID)
	b["auth"] = map[string]any{"type": "m.login.sso", "session": r.Str("session")}
	s.MustOK(t, "POST", path, dev.Token, b)
	q := s.MustOK(t, "POST", hstest.Path("/keys/query"), dev.Token, map[string]any{"device_keys": map[string]any{dev.UserID: []string{}}})
	if dig(q.JSON, "master_keys", dev.UserID, "keys", "ed25519:"+cs2.master.pub) == nil {
		t.Fatalf("master key not replaced: %s", q.Body)
	}
}

// The provider must name the session's own user: anyone else signing in
// there confirms nothing, and is told so.
func TestSSOUIAOtherUserRefused(t *testing.T) {
	s, p := ssoServer(t, func(c *config.Config) { c.PasswordLogin = false })
	jean := ssoAccount(t, s, p, ssotest.User{Subject: "sub-jean", Email: "jean.martin@x.gouv.fr", EmailVerified: true})
	marie := ssoAccount(t, s, p, ssotest.User{Subject: "sub-marie", Email: "marie.curie@x.gouv.fr", EmailVerified: true})
	del := hstest.Path("/devices/%s", jean.DeviceID)
	r := s.Do(t, "DELETE", del, jean.Token, map[string]any{})
	session := r.Str("session")
	flowsOf(t, r)
	for _, u := range []ssotest.User{
		{Subject: "sub-marie", Email: "marie.curie@x.gouv.fr", EmailVerified: true}, // another account
		{Subject: "sub-new", Email: "paul.durand@x.gouv.fr", EmailVerified: true},   // no account yet
		{Subject: "sub-jean", Email: "jean.martin@x.gouv.fr", EmailVerified: false}, // not verified
	} {
		p.SignIn(u)
		code, body := confirmSSO(t, s, session)
		if code != 403 || strings.Contains(body, "onAuthDone") {
			t.Fatalf("%s confirmed jean's session: %d %s", u.Email, code, body)
		}
		if u.Email == "marie.curie@x.gouv.fr" && !strings.Contains(body, "as someone else") {
			t.Errorf("refusal page: %s", body)
		}
		r = s.Do(t, "DELETE", del, jean.Token, map[string]any{"auth": map[string]any{"session": session}})
		if flowsOf(t, r); string(mustJSON(r.JSON["completed"])) != "[]" {
			t.Fatalf("completed after a refusal: %s", r.Body)
		}
	}
	// A confirmation made no account for the stranger.
	if owner, _ := s.HS.Threepids.Owner(context.Background(), "paul.durand@x.gouv.fr"); owner != "" {
		t.Fatalf("confirmation created %s", owner)
	}
	// Marie's own session is hers: she cannot open jean's page as hers,
	// and jean's confirmation does not complete hers.
	r2 := s.Do(t, "DELETE", hstest.Path("/devices/%s", marie.DeviceID), marie.Token, map[string]any{})
	p.SignIn(ssotest.User{Subject: "sub-jean", Email: "jean.martin@x.gouv.fr", EmailVerified: true})
	if code, _ := confirmSSO(t, s, r2.Str("session")); code != 403 {
		t.Fatalf("jean confirmed marie's session: %d", code)
	}
	// The right person still can.
	if code, _ := confirmSSO(t, s, session); code != 200 {
		t.Fatalf("jean's confirmation: %d", code)
	}
	s.MustOK(t, "DELETE", del, jean.Token, map[string]any{"auth": map[string]any{"session": session}})
}

// The fallback's attempt is bound to the browser and used once; unknown
// sessions and stage types get a page, not a confirmation.
func TestSSOUIABadState(t *testing.T) {
	s, p := ssoServer(t, func(c *config.Config) { c.PasswordLogin = false })
	jean := ssoAccount(t, s, p, ssotest.User{Subject: "sub-jean", Email: "jean.martin@x.gouv.fr", EmailVerified: true})
	del := hstest.Path("/devices/%s", jean.DeviceID)
	session := s.Do(t, "DELETE", del, jean.Token, map[string]any{}).Str("session")

	var callback string
	b := browser(s)
	stop := func(r *http.Request, via []*http.Request) error {
		if r.URL.Path == sso.CallbackPath {
			callback = r.URL.String()
			return http.ErrUseLastResponse
		}
		return nil
	}
	b.CheckRedirect = stop
	browse(t, b, confirmLink(t, b, session))
	if callback == "" {
		t.Fatal("never reached the callback")
	}
	notDone := func(what string) {
		t.Helper()
		r := s.Do(t, "DELETE", del, jean.Token, map[string]any{"auth": map[string]any{"session": session}})
		if flowsOf(t, r); string(mustJSON(r.JSON["completed"])) != "[]" {
			t.Fatalf("%s completed the session: %s", what, r.Body)
		}
	}
	// Another browser (no cookie): refused, and the attempt is spent.
	if code, body := browse(t, browser(s), callback); code != 400 || !strings.Contains(body, "unknown or has expired") {
		t.Fatalf("other browser: %d %s", code, body)
	}
	notDone("another browser")
	b.CheckRedirect = browser(s).CheckRedirect
	if code, _ := browse(t, b, callback); code != 400 {
		t.Fatalf("replayed state: %d", code)
	}
	notDone("a replayed state")
	// A forged state with the browser's real cookie.
	b.CheckRedirect = stop
	browse(t, b, confirmLink(t, b, session))
	u, _ := url.Parse(callback)
	q := u.Query()
	q.Set("state", "forged")
	u.RawQuery = q.Encode()
	b.CheckRedirect = browser(s).CheckRedirect
	if code, _ := browse(t, b, u.String()); code != 400 {
		t.Fatalf("forged state: %d", code)
	}
	notDone("a forged state")
	// A login attempt's state cannot confirm: it logs in (a token for the
	// client), it does not complete the session.
	res, _ := ssoLogin(t, browser(s), "https://app.example/cb?state=s1")
	if res.StatusCode != http.StatusFound {
		t.Fatalf("login: %d", res.StatusCode)
	}
	notDone("a login")

	// Unknown sessions, other stage types, no session.
	if code, body := browse(t, browser(s), fallbackURL("nope")); code != 400 || !strings.Contains(body, "Unknown session") {
		t.Fatalf("unknown session: %d %s", code, body)
	}
	if code, _ := browse(t, browser(s), ssoBase+"/_matrix/client/v3/auth/m.login.recaptcha/fallback/web?session="+session); code != 404 {
		t.Fatalf("other stage type: %d", code)
	}
	if code, _ := browse(t, browser(s), ssoBase+"/_matrix/client/r0/auth/m.login.sso/fallback/web"); code != 400 {
		t.Fatalf("no session: %d", code)
	}
	// After all that, a proper confirmation still works.
	if code, _ := confirmSSO(t, s, session); code != 200 {
		t.Fatalf("confirmation: %d", code)
	}
	s.MustOK(t, "DELETE", del, jean.Token, map[string]any{"auth": map[string]any{"session": session}})
}

// The flows of the 401: m.login.password for accounts with a password,
// m.login.sso for accounts single sign-on maps to (a bound address).
func TestSSOUIAFlows(t *testing.T) {
	s, p := ssoServer(t)
	ctx := context.Background()
	challenge := func(u *hstest.User) string {
		return flowsOf(t, s.Do(t, "POST", hstest.Path("/delete_devices"), u.Token, map[string]any{"devices": []string{"X"}}))
	}
	// SSO-only account (password login on or off: it has no password).
	jean := ssoAccount(t, s, p, ssotest.User{Subject: "sub-jean", Email: "jean.martin@x.gouv.fr", EmailVerified: true})
	if got := challenge(jean); got != ssoOnlyFlows {
		t.Errorf("SSO-only account: %s", got)
	}
	// A password and an address: either.
	both := s.CreateUser(t, "both")
	if err := s.HS.Accounts.ResetPassword(ctx, both.UserID, "correct horse battery", false); err != nil {
		t.Fatal(err)
	}
	if err := s.HS.Threepids.Bind(ctx, both.UserID, "both@x.gouv.fr"); err != nil {
		t.Fatal(err)
	}
	if got := challenge(both); got != `[{"stages":["m.login.password"]},{"stages":["m.login.sso"]}]` {
		t.Errorf("password and address: %s", got)
	}
	// The password still works for it.
	s.MustOK(t, "POST", hstest.Path("/delete_devices"), both.Token, map[string]any{"devices": []string{"X"},
		"auth": map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": "both"}, "password": "correct horse battery"}})
	// A password and no address: the password only.
	pw := s.CreateUser(t, "pw")
	if err := s.HS.Accounts.ResetPassword(ctx, pw.UserID, "correct horse battery", false); err != nil {
		t.Fatal(err)
	}
	if got := challenge(pw); got != `[{"stages":["m.login.password"]}]` {
		t.Errorf("password only: %s", got)
	}
	// Neither a password nor an address: no way to prove oneself.
	none := s.CreateUser(t, "none")
	expectErr(t, s.Do(t, "POST", hstest.Path("/delete_devices"), none.Token, map[string]any{"devices": []string{"X"}}), 403, "M_FORBIDDEN")
	// m.login.sso is not accepted where it is not offered.
	expectErr(t, s.Do(t, "POST", hstest.Path("/delete_devices"), pw.Token, map[string]any{"devices": []string{"X"},
		"auth": map[string]any{"type": "m.login.sso"}}), 400, "M_UNRECOGNIZED")

	// Without single sign-on: the password, as ever.
	plain := hstest.Start(t)
	u := plain.CreateUser(t, "alice")
	if got := flowsOf(t, plain.Do(t, "POST", hstest.Path("/delete_devices"), u.Token, map[string]any{"devices": []string{"X"}})); got != `[{"stages":["m.login.password"]}]` {
		t.Errorf("no SSO: %s", got)
	}
	if code, _ := browse(t, http.DefaultClient, plain.URL+"/_matrix/client/v3/auth/m.login.sso/fallback/web?session=x"); code != 404 {
		t.Errorf("fallback without SSO: %d", code)
	}
}

// oidc_require_email_verified: false trusts the provider's address.
func TestSSOTrustUnverifiedEmail(t *testing.T) {
	s, p := ssoServer(t, func(c *config.Config) { c.OIDCRequireEmailVerified = false })
	u := ssoAccount(t, s, p, ssotest.User{Subject: "sub-jean", Email: "jean.martin@x.gouv.fr", EmailVerified: false})
	if u.UserID != "@jean.martin-x.gouv.fr:localhost" {
		t.Fatalf("user: %s", u.UserID)
	}
	// And it confirms UIA the same way.
	r := s.Do(t, "DELETE", hstest.Path("/devices/%s", u.DeviceID), u.Token, map[string]any{})
	if code, _ := confirmSSO(t, s, r.Str("session")); code != 200 {
		t.Fatalf("confirmation: %d", code)
	}
	s.MustOK(t, "DELETE", hstest.Path("/devices/%s", u.DeviceID), u.Token, map[string]any{"auth": map[string]any{"session": r.Str("session")}})
}

// The fallback page of m.login.password: a form whose password of the
// session's user completes the stage.
func TestUIAPasswordFallback(t *testing.T) {
	s := hstest.Start(t)
	alice := s.Register(t, "alice")
	second := s.MustOK(t, "POST", "/_matrix/client/v3/login", "", map[string]any{"type": "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": "alice"}, "password": "correct horse battery alice"})
	del := hstest.Path("/devices/%s", second.Str("device_id"))
	r := s.Do(t, "DELETE", del, alice.Token, map[string]any{})
	session := r.Str("session")
	if got := flowsOf(t, r); got != `[{"stages":["m.login.password"]}]` {
		t.Fatalf("flows: %s", got)
	}
	page := s.URL + "/_matrix/client/v3/auth/m.login.password/fallback/web"
	code, body := browse(t, http.DefaultClient, page+"?session="+url.QueryEscape(session))
	if code != 200 || !strings.Contains(body, `name="password"`) || !strings.Contains(body, alice.UserID) {
		t.Fatalf("form: %d %s", code, body)
	}
	post := func(sess, pw string) (int, string) {
		res, err := http.PostForm(page, url.Values{"session": {sess}, "password": {pw}})
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := post(session, "wrong"); code != 403 || strings.Contains(body, "onAuthDone") {
		t.Fatalf("wrong password: %d %s", code, body)
	}
	if code, _ := post("unknown", "correct horse battery alice"); code != 400 {
		t.Fatalf("unknown session: %d", code)
	}
	r = s.Do(t, "DELETE", del, alice.Token, map[string]any{"auth": map[string]any{"session": session}})
	if flowsOf(t, r); string(mustJSON(r.JSON["completed"])) != "[]" {
		t.Fatalf("completed by a wrong password: %s", r.Body)
	}
	if code, body := post(session, "correct horse battery alice"); code != 200 || !strings.Contains(body, "window.onAuthDone()") {
		t.Fatalf("right password: %d %s", code, body)
	}
	s.MustOK(t, "DELETE", del, alice.Token, map[string]any{"auth": map[string]any{"session": session}})
}

// Two processes on one PostgreSQL database: the client's requests reach
// one, the browser (fallback page and provider callback) the other; the
// m.login.sso stage completes all the same, once.
func TestSSOUIAAcrossProcesses(t *testing.T) {
	if os.Getenv(hstest.EnvDatabase) != "postgres" {
		t.Skipf("needs %s=postgres (the PostgreSQL pass of make test)", hstest.EnvDatabase)
	}
	dsn := pgtest.NewDatabase(t)
	a, p := ssoServer(t, func(c *config.Config) { c.Database, c.PasswordLogin = dsn, false })
	b := hstest.Start(t, func(c *config.Config) {
		c.Database, c.PasswordLogin = dsn, false
		c.EmailDomains, c.EnableRegistration = a.Config.EmailDomains, false
		c.OIDCIssuer, c.OIDCClientID, c.OIDCClientSecret = p.Issuer, p.ClientID, p.ClientSecret
		c.OIDCProviderName, c.PublicBaseURL = "ProConnect", ssoBase
		c.SSORedirectAllow = []string{"https://app.example/cb"}
	})
	jean := ssoAccount(t, a, p, ssotest.User{Subject: "sub-jean", Email: "jean.martin@x.gouv.fr", EmailVerified: true})
	second := ssoAccount(t, a, p, ssotest.User{Subject: "sub-jean", Email: "jean.martin@x.gouv.fr", EmailVerified: true})
	del := hstest.Path("/devices/%s", second.DeviceID)
	r := a.Do(t, "DELETE", del, jean.Token, map[string]any{})
	session := r.Str("session")
	if got := flowsOf(t, r); got != ssoOnlyFlows {
		t.Fatalf("flows: %s", got)
	}
	// The browser reaches B only.
	if code, body := confirmSSO(t, b, session); code != 200 || !strings.Contains(body, "onAuthDone") {
		t.Fatalf("confirmation through B: %d %s", code, body)
	}
	// Another operation cannot take it, in either process.
	r = b.Do(t, "DELETE", hstest.Path("/devices/%s", jean.DeviceID), jean.Token, map[string]any{"auth": map[string]any{"session": session}})
	if r.Status == 200 {
		t.Fatalf("another operation used the confirmation: %s", r.Body)
	}
	a.MustOK(t, "DELETE", del, jean.Token, map[string]any{"auth": map[string]any{"session": session}})
	// Taken once: B cannot use it again.
	r = b.Do(t, "DELETE", del, jean.Token, map[string]any{"auth": map[string]any{"session": session}})
	if r.Status == 200 {
		t.Fatalf("used twice: %s", r.Body)
	}
	// Someone else confirming through B is refused.
	third := ssoAccount(t, a, p, ssotest.User{Subject: "sub-jean", Email: "jean.martin@x.gouv.fr", EmailVerified: true})
	ssoAccount(t, a, p, ssotest.User{Subject: "sub-marie", Email: "marie.curie@x.gouv.fr", EmailVerified: true})
	del = hstest.Path("/devices/%s", third.DeviceID)
	session = a.Do(t, "DELETE", del, jean.Token, map[string]any{}).Str("session")
	if code, body := confirmSSO(t, b, session); code != 403 || !strings.Contains(body, "as someone else") {
		t.Fatalf("marie confirmed jean's session through B: %d %s", code, body)
	}
	flowsOf(t, a.Do(t, "DELETE", del, jean.Token, map[string]any{"auth": map[string]any{"session": session}}))
}
