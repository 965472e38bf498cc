package clientapi_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"conclave/internal/config"
	"conclave/internal/homeserver/hstest"
	"conclave/internal/sso"
	"conclave/internal/sso/ssotest"
)

// The browser reaches the server under its public name, as it would behind
// a reverse proxy: the provider only knows that name's callback.
const ssoBase = "http://conclave.test"

// ssoServer starts a real OpenID Connect provider and a server that signs
// in through it; x.gouv.fr belongs on this server (localhost), other.fr on
// another, everything else on the externals' server.
func ssoServer(t *testing.T, opts ...hstest.Option) (*hstest.Server, *ssotest.Provider) {
	t.Helper()
	p := ssotest.Start(t, ssoBase+sso.CallbackPath)
	domains := filepath.Join(t.TempDir(), "domains")
	os.WriteFile(domains, []byte("x.gouv.fr localhost\nother.fr other.example\n* ext.example\n"), 0o600)
	all := append([]hstest.Option{func(c *config.Config) {
		c.EmailDomains, c.EnableRegistration = domains, false
		c.OIDCIssuer, c.OIDCClientID, c.OIDCClientSecret = p.Issuer, p.ClientID, p.ClientSecret
		c.OIDCProviderName = "ProConnect"
		c.PublicBaseURL = ssoBase
		c.SSORedirectAllow = []string{"https://app.example/cb"}
	}}, opts...)
	return hstest.Start(t, all...), p
}

// browser is an http.Client with a cookie jar that follows redirects like
// a browser, reaching conclave.test at the test server, and stops when it
// is sent to a client (app.example, evil.example).
func browser(s *hstest.Server) *http.Client {
	jar, _ := cookiejar.New(nil)
	addr := strings.TrimPrefix(s.URL, "http://")
	tr := &http.Transport{DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
		if a == "conclave.test:80" {
			a = addr
		}
		return (&net.Dialer{}).DialContext(ctx, network, a)
	}}
	return &http.Client{Jar: jar, Transport: tr, Timeout: 30 * time.Second, CheckRedirect: func(r *http.Request, via []*http.Request) error {
		if strings.HasSuffix(r.URL.Host, ".example") || len(via) > 10 {
			return http.ErrUseLastResponse
		}
		return nil
	}}
}

// ssoLogin runs the browser through the whole flow for the client at
// clientURL and returns the last response (the redirect to the client, or
// a page) and its body.
func ssoLogin(t *testing.T, b *http.Client, clientURL string) (*http.Response, string) {
	t.Helper()
	res, err := b.Get(ssoBase + "/_matrix/client/v3/login/sso/redirect?redirectUrl=" + url.QueryEscape(clientURL))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res, string(body)
}

// ssoToken runs the flow for the allowed client and returns the
// loginToken of the redirect to it.
func ssoToken(t *testing.T, b *http.Client) string {
	t.Helper()
	res, body := ssoLogin(t, b, "https://app.example/cb?state=s1")
	if res.StatusCode != http.StatusFound {
		t.Fatalf("expected the redirect to the client, got %d: %s", res.StatusCode, body)
	}
	u, err := url.Parse(res.Header.Get("Location"))
	if err != nil || u.Host != "app.example" || u.Path != "/cb" || u.Query().Get("state") != "s1" {
		t.Fatalf("redirect to %q", res.Header.Get("Location"))
	}
	tok := u.Query().Get("loginToken")
	if tok == "" {
		t.Fatal("no loginToken")
	}
	return tok
}

func tokenLogin(t *testing.T, s *hstest.Server, tok string) *hstest.Response {
	return s.Do(t, "POST", "/_matrix/client/v3/login", "", map[string]any{"type": "m.login.token", "token": tok})
}

func TestSSOLoginFlows(t *testing.T) {
	s, _ := ssoServer(t)
	r := s.MustOK(t, "GET", "/_matrix/client/v3/login", "", nil)
	if got := string(mustJSON(r.JSON["flows"])); got != `[{"type":"m.login.password"},{"identity_providers":[{"id":"oidc","name":"ProConnect"}],"type":"m.login.sso"},{"type":"m.login.token"}]` {
		t.Fatalf("flows: %s", got)
	}
	// Password login turned off: not offered, not accepted.
	s2, _ := ssoServer(t, func(c *config.Config) { c.PasswordLogin = false })
	u := s2.CreateUser(t, "alice")
	r = s2.MustOK(t, "GET", "/_matrix/client/v3/login", "", nil)
	if got := string(mustJSON(r.JSON["flows"])); strings.Contains(got, "m.login.password") {
		t.Fatalf("flows: %s", got)
	}
	expectErr(t, s2.Do(t, "POST", "/_matrix/client/v3/login", "", map[string]any{"type": "m.login.password", "user": u.UserID, "password": "x"}),
		http.StatusBadRequest, "M_UNKNOWN")
}

func TestSSONewAndExistingAccount(t *testing.T) {
	s, p := ssoServer(t)
	p.SignIn(ssotest.User{Subject: "sub-jean", Email: "Jean.Martin@x.gouv.fr", EmailVerified: true})
	b := browser(s)
	tok := ssoToken(t, b)
	r := tokenLogin(t, s, tok)
	if r.Status != 200 || r.Str("user_id") != "@jean.martin-x.gouv.fr:localhost" || r.Str("access_token") == "" {
		t.Fatalf("token login: %d %s", r.Status, r.Body)
	}
	access := r.Str("access_token")
	prof := s.MustOK(t, "GET", "/_matrix/client/v3/profile/@jean.martin-x.gouv.fr:localhost", access, nil)
	if prof.Str("displayname") != "Jean Martin [X]" {
		t.Errorf("display name: %s", prof.Body)
	}
	tp := s.MustOK(t, "GET", "/_matrix/client/v3/account/3pid", access, nil)
	if !strings.Contains(string(tp.Body), `"address":"jean.martin@x.gouv.fr"`) {
		t.Errorf("bound address: %s", tp.Body)
	}
	// A login token is good once.
	expectErr(t, tokenLogin(t, s, tok), http.StatusForbidden, "M_FORBIDDEN")
	expectErr(t, tokenLogin(t, s, "syl_nope"), http.StatusForbidden, "M_FORBIDDEN")

	// The same person again, from a fresh browser: the same account.
	tok = ssoToken(t, browser(s))
	if r := tokenLogin(t, s, tok); r.Str("user_id") != "@jean.martin-x.gouv.fr:localhost" {
		t.Fatalf("second login: %d %s", r.Status, r.Body)
	}

	// A provider that gives the address at its userinfo endpoint only.
	p.UserinfoOnly(true)
	tok = ssoToken(t, browser(s))
	if r := tokenLogin(t, s, tok); r.Str("user_id") != "@jean.martin-x.gouv.fr:localhost" {
		t.Fatalf("claims from userinfo: %d %s", r.Status, r.Body)
	}
	p.UserinfoOnly(false)

	// An account made before (a password account whose address is bound)
	// is found by its address, whatever its name.
	old := s.CreateUser(t, "marie")
	if err := s.HS.Threepids.Bind(context.Background(), old.UserID, "marie.curie@x.gouv.fr"); err != nil {
		t.Fatal(err)
	}
	p.SignIn(ssotest.User{Subject: "sub-marie", Email: "marie.curie@x.gouv.fr", EmailVerified: true})
	tok = ssoToken(t, browser(s))
	if r := tokenLogin(t, s, tok); r.Status != 200 || r.Str("user_id") != old.UserID {
		t.Fatalf("existing account: %d %s", r.Status, r.Body)
	}
}

func TestSSORefused(t *testing.T) {
	s, p := ssoServer(t)
	page := func(u ssotest.User) (int, string) {
		p.SignIn(u)
		res, body := ssoLogin(t, browser(s), "https://app.example/cb?state=s1")
		return res.StatusCode, body
	}
	// Another server's domain, an external not invited, no verified address.
	if code, body := page(ssotest.User{Subject: "a", Email: "bob@other.fr", EmailVerified: true}); code != 403 || !strings.Contains(body, "belongs on other.example") {
		t.Errorf("other server's domain: %d %s", code, body)
	}
	if code, body := page(ssotest.User{Subject: "b", Email: "eve@gmail.com", EmailVerified: true}); code != 403 || !strings.Contains(body, "belongs on ext.example") {
		t.Errorf("external's domain: %d %s", code, body)
	}
	if code, body := page(ssotest.User{Subject: "c", Email: "jean@x.gouv.fr", EmailVerified: false}); code != 403 || !strings.Contains(body, "did not verify") {
		t.Errorf("unverified: %d %s", code, body)
	}
	if code, body := page(ssotest.User{Subject: "d", EmailVerified: true}); code != 403 {
		t.Errorf("no address: %d %s", code, body)
	}
	// Redirect URLs that are not a client's.
	for _, bad := range []string{"", "javascript:alert(1)", "data:text/html,x", "/relative", "https://"} {
		r := s.Do(t, "GET", "/_matrix/client/v3/login/sso/redirect?redirectUrl="+url.QueryEscape(bad), "", nil)
		if r.Status != 400 {
			t.Errorf("redirectUrl %q: %d %s", bad, r.Status, r.Body)
		}
	}
	expectErr(t, s.Do(t, "GET", "/_matrix/client/v3/login/sso/redirect/other?redirectUrl=https://app.example/cb", "", nil), 404, "M_NOT_FOUND")
}

// The callback's state must be one this server made, for this browser,
// used once.
func TestSSOBadState(t *testing.T) {
	s, p := ssoServer(t)
	p.SignIn(ssotest.User{Subject: "sub-jean", Email: "jean.martin@x.gouv.fr", EmailVerified: true})
	// Stop the browser at the callback: the URL the provider sent it to.
	var callback string
	b := browser(s)
	b.CheckRedirect = func(r *http.Request, via []*http.Request) error {
		if r.URL.Path == sso.CallbackPath {
			callback = r.URL.String()
			return http.ErrUseLastResponse
		}
		return nil
	}
	res, _ := ssoLogin(t, b, "https://app.example/cb?state=s1")
	if callback == "" {
		t.Fatalf("never reached the callback: %d", res.StatusCode)
	}
	get := func(c *http.Client, u string) (int, string) {
		res, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(body)
	}
	// Another browser (no cookie) cannot finish it — and the attempt is
	// then spent.
	if code, body := get(browser(s), callback); code != 400 || !strings.Contains(body, "unknown or has expired") {
		t.Fatalf("other browser: %d %s", code, body)
	}
	b.CheckRedirect = browser(s).CheckRedirect
	if code, _ := get(b, callback); code != 400 {
		t.Fatalf("spent attempt: %d", code)
	}
	// A state this server never made, with a real cookie.
	ssoLogin(t, b, "https://app.example/cb?state=s1")
	u, _ := url.Parse(callback)
	q := u.Query()
	q.Set("state", "forged")
	u.RawQuery = q.Encode()
	if code, _ := get(b, u.String()); code != 400 {
		t.Fatalf("forged state: %d", code)
	}
	// The right browser, the right state: works (the flow is not broken).
	tok := ssoToken(t, b)
	// An expired login token.
	s.HS.SSO.SetClock(func() time.Time { return time.Now().Add(sso.LoginTokenLifetime + time.Second) })
	expectErr(t, tokenLogin(t, s, tok), http.StatusForbidden, "M_FORBIDDEN")
	s.HS.SSO.SetClock(time.Now)
	// An attempt left too long at the provider.
	b.CheckRedirect = func(r *http.Request, via []*http.Request) error {
		if r.URL.Path == sso.CallbackPath {
			callback = r.URL.String()
			return http.ErrUseLastResponse
		}
		return nil
	}
	ssoLogin(t, b, "https://app.example/cb?state=s1")
	s.HS.SSO.SetClock(func() time.Time { return time.Now().Add(sso.AttemptLifetime + time.Second) })
	b.CheckRedirect = browser(s).CheckRedirect
	if code, _ := get(b, callback); code != 400 {
		t.Fatalf("expired attempt: %d", code)
	}
	s.HS.SSO.SetClock(time.Now)
}

// A client URL the operator did not allow gets a confirmation page that
// names it, with the link; nothing goes there on its own.
func TestSSOConfirmPage(t *testing.T) {
	s, p := ssoServer(t)
	p.SignIn(ssotest.User{Subject: "sub-jean", Email: "jean.martin@x.gouv.fr", EmailVerified: true})
	res, body := ssoLogin(t, browser(s), "https://evil.example/steal?x=\"><script>")
	if res.StatusCode != 400 {
		t.Fatalf("quotes in the URL: %d", res.StatusCode)
	}
	res, body = ssoLogin(t, browser(s), "https://app.example.evil.example/cb")
	if res.StatusCode != 200 || !strings.Contains(body, "Continue to <strong>app.example.evil.example</strong>") {
		t.Fatalf("confirm page: %d %s", res.StatusCode, body)
	}
	m := regexp.MustCompile(`href="([^"]+)"`).FindStringSubmatch(body)
	if m == nil || !strings.HasPrefix(m[1], "https://app.example.evil.example/cb?loginToken=") {
		t.Fatalf("link: %s", body)
	}
	tok := strings.TrimPrefix(strings.ReplaceAll(m[1], "&amp;", "&"), "https://app.example.evil.example/cb?loginToken=")
	if r := tokenLogin(t, s, tok); r.Status != 200 {
		t.Fatalf("token from the page: %d %s", r.Status, r.Body)
	}
}

// The server's own web client (at public_base_url's root) gets its login
// token at once, without the confirmation page; other paths of the host,
// or the page when the web client is off, do not.
func TestSSOOwnWebClient(t *testing.T) {
	for _, tc := range []struct {
		webClient bool
		client    string
		direct    bool
	}{
		{true, ssoBase + "/", true},
		{true, ssoBase + "/other", false},
		{true, "https://conclave.test/", false}, // another scheme
		{false, ssoBase + "/", false},
	} {
		s, p := ssoServer(t, func(c *config.Config) { c.WebClient = tc.webClient })
		p.SignIn(ssotest.User{Subject: "sub-jean", Email: "jean.martin@x.gouv.fr", EmailVerified: true})
		b := browser(s)
		follow := b.CheckRedirect
		b.CheckRedirect = func(r *http.Request, via []*http.Request) error {
			if r.URL.Query().Get("loginToken") != "" {
				return http.ErrUseLastResponse // arrived at the client
			}
			return follow(r, via)
		}
		res, body := ssoLogin(t, b, tc.client)
		loc, _ := url.Parse(res.Header.Get("Location"))
		direct := res.StatusCode == http.StatusFound && loc != nil && loc.Query().Get("loginToken") != "" &&
			strings.HasPrefix(loc.String(), tc.client+"?")
		if direct != tc.direct {
			t.Fatalf("web client %v, %s: direct %v, want %v (%d %s %s)", tc.webClient, tc.client, direct, tc.direct, res.StatusCode, loc, body)
		}
		if !tc.direct && (res.StatusCode != 200 || !strings.Contains(body, "Continue to")) {
			t.Fatalf("web client %v, %s: no confirmation page: %d %s", tc.webClient, tc.client, res.StatusCode, body)
		}
	}
}
