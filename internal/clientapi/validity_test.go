package clientapi_test

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"conclave/internal/config"
	"conclave/internal/homeserver/hstest"
	"conclave/internal/mail/mailtest"
)

var renewRE = regexp.MustCompile(`https://matrix\.ministry\.fr(/_matrix/client/v3/account_validity/renew\?token=\S+)`)

// validityServer is the externals' server (it names itself in
// external_servers): accounts last 90 days, renewal mails go to a real SMTP
// server.
func validityServer(t *testing.T) (*hstest.Server, *mailtest.Server) {
	t.Helper()
	return emailServer(t, func(c *config.Config) {
		c.ExternalServers = []string{c.ServerName}
		c.ExternalAccountValidity = config.Duration{Duration: 90 * 24 * time.Hour}
		c.EnableRegistration = false
	})
}

// at moves the server's clock (validity only) by d from now.
func at(s *hstest.Server, d time.Duration) {
	s.HS.Validity.SetClock(func() time.Time { return time.Now().Add(d) })
}

func renewLink(t *testing.T, m mailtest.Mail) string {
	t.Helper()
	l := renewRE.FindStringSubmatch(m.Text)
	if l == nil {
		t.Fatalf("no renewal link in:\n%s", m.Text)
	}
	return l[1]
}

func getPage(t *testing.T, s *hstest.Server, path string) (int, string) {
	t.Helper()
	res, err := http.Get(s.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestAccountValidityExpiryAndRenewal(t *testing.T) {
	s, smtp := validityServer(t)
	u := s.CreateUser(t, "eve")
	if err := s.HS.Threepids.Bind(context.Background(), u.UserID, "eve@gmail.com"); err != nil {
		t.Fatal(err)
	}
	// The first request starts the 90 days.
	s.MustOK(t, "GET", "/_matrix/client/v3/account/whoami", u.Token, nil)
	at(s, 89*24*time.Hour)
	s.MustOK(t, "GET", "/_matrix/client/v3/account/whoami", u.Token, nil)

	// Expired: every request is refused, the media API's too.
	at(s, 91*24*time.Hour)
	for _, p := range []string{"/_matrix/client/v3/account/whoami", "/_matrix/client/v3/sync?timeout=0", "/_matrix/client/v1/media/config"} {
		expectErr(t, s.Do(t, "GET", p, u.Token, nil), http.StatusForbidden, "ORG_MATRIX_EXPIRED_ACCOUNT")
	}
	// … but asking for a renewal mail, on every prefix.
	for _, prefix := range []string{"/_matrix/client/r0", "/_matrix/client/unstable"} {
		s.MustOK(t, "POST", prefix+"/account_validity/send_mail", u.Token, map[string]any{})
	}
	s.MustOK(t, "POST", "/_matrix/client/v3/account_validity/send_mail", u.Token, map[string]any{})
	m := smtp.Wait(t, "eve@gmail.com", 3)
	if m.Subject != "Renew your account" {
		t.Errorf("subject %q", m.Subject)
	}
	link := renewLink(t, m)
	// Only the last link works.
	old := renewLink(t, smtp.Wait(t, "eve@gmail.com", 1))
	if code, _ := getPage(t, s, old); code != 404 {
		t.Errorf("superseded link: %d", code)
	}
	code, page := getPage(t, s, link)
	if code != 200 || !strings.Contains(page, "Your account has been renewed") {
		t.Fatalf("renewal: %d %s", code, page)
	}
	s.MustOK(t, "GET", "/_matrix/client/v3/account/whoami", u.Token, nil)
	if code, _ := getPage(t, s, link); code != 404 {
		t.Errorf("used link: %d", code)
	}
	if code, _ := getPage(t, s, "/_matrix/client/v3/account_validity/renew?token=nope"); code != 404 {
		t.Errorf("unknown token: %d", code)
	}
	// Renewed for 90 days from the renewal.
	at(s, (91+89)*24*time.Hour)
	s.MustOK(t, "GET", "/_matrix/client/v3/account/whoami", u.Token, nil)
	at(s, (91+91)*24*time.Hour)
	expectErr(t, s.Do(t, "GET", "/_matrix/client/v3/account/whoami", u.Token, nil), http.StatusForbidden, "ORG_MATRIX_EXPIRED_ACCOUNT")
	// An expired account may still log out.
	s.MustOK(t, "POST", "/_matrix/client/v3/logout", u.Token, map[string]any{})
	expectErr(t, s.Do(t, "GET", "/_matrix/client/v3/account/whoami", u.Token, nil), http.StatusUnauthorized, "M_UNKNOWN_TOKEN")
}

// A renewal mail goes out by itself within the notice before expiry, once.
func TestAccountValidityRenewalMailBeforeExpiry(t *testing.T) {
	s, smtp := validityServer(t)
	u := s.CreateUser(t, "eve")
	if err := s.HS.Threepids.Bind(context.Background(), u.UserID, "eve@gmail.com"); err != nil {
		t.Fatal(err)
	}
	s.MustOK(t, "GET", "/_matrix/client/v3/account/whoami", u.Token, nil)
	ctx := context.Background()
	at(s, 80*24*time.Hour) // ten days before: not yet
	if n, err := s.HS.Validity.MailDue(ctx); err != nil || n != 0 {
		t.Fatalf("early: %d %v", n, err)
	}
	at(s, 84*24*time.Hour) // six days before
	if n, err := s.HS.Validity.MailDue(ctx); err != nil || n != 1 {
		t.Fatalf("due: %d %v", n, err)
	}
	if n, _ := s.HS.Validity.MailDue(ctx); n != 0 {
		t.Fatalf("mailed twice: %d", n)
	}
	link := renewLink(t, smtp.Wait(t, "eve@gmail.com", 1))
	if code, _ := getPage(t, s, link); code != 200 {
		t.Fatalf("renewal: %d", code)
	}
	at(s, (84+89)*24*time.Hour)
	s.MustOK(t, "GET", "/_matrix/client/v3/account/whoami", u.Token, nil)
}

// Synapse's admin API sets an account's expiry.
func TestAccountValidityAdmin(t *testing.T) {
	s, _ := validityServer(t)
	admin := s.CreateAdmin(t, "root")
	u := s.CreateUser(t, "eve")
	path := "/_synapse/admin/v1/account_validity/validity"
	expectErr(t, s.Do(t, "POST", path, u.Token, map[string]any{"user_id": u.UserID}), http.StatusForbidden, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "POST", path, admin.Token, map[string]any{}), http.StatusBadRequest, "M_MISSING_PARAM")
	expectErr(t, s.Do(t, "POST", path, admin.Token, map[string]any{"user_id": "@nobody:" + s.ServerName}), http.StatusNotFound, "M_NOT_FOUND")
	expectErr(t, s.Do(t, "POST", path, admin.Token, map[string]any{"user_id": "@eve:elsewhere.example"}), http.StatusBadRequest, "M_INVALID_PARAM")

	past := time.Now().Add(-time.Hour).UnixMilli()
	r := s.MustOK(t, "POST", path, admin.Token, map[string]any{"user_id": u.UserID, "expiration_ts": past, "enable_renewal_emails": false})
	if int64(r.JSON["expiration_ts"].(float64)) != past {
		t.Fatalf("set: %s", r.Body)
	}
	expectErr(t, s.Do(t, "GET", "/_matrix/client/v3/account/whoami", u.Token, nil), http.StatusForbidden, "ORG_MATRIX_EXPIRED_ACCOUNT")
	// The admin, on the same server, is not subject to expiry.
	at(s, 200*24*time.Hour)
	s.MustOK(t, "GET", "/_matrix/client/v3/account/whoami", admin.Token, nil)
	at(s, 0)
	// Without expiration_ts: the period from now.
	r = s.MustOK(t, "POST", path, admin.Token, map[string]any{"user_id": u.UserID})
	if exp := int64(r.JSON["expiration_ts"].(float64)); exp < time.Now().Add(89*24*time.Hour).UnixMilli() {
		t.Fatalf("default expiry: %s", r.Body)
	}
	s.MustOK(t, "GET", "/_matrix/client/v3/account/whoami", u.Token, nil)
}
