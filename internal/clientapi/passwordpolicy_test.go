package clientapi_test

import (
	"net/http"
	"testing"

	"conclave/internal/config"
	"conclave/internal/homeserver/hstest"
)

// GET /password_policy is {} without a policy.
func TestPasswordPolicyNone(t *testing.T) {
	s := hstest.Start(t)
	for _, v := range []string{"r0", "v3", "unstable"} {
		r := s.MustOK(t, "GET", "/_matrix/client/"+v+"/password_policy", "", nil)
		if len(r.JSON) != 0 {
			t.Fatalf("%s: %s", v, r.Body)
		}
	}
}

// A password policy is announced and enforced at registration and password
// change, with Synapse's errcodes (Tchap's clients read them).
func TestPasswordPolicy(t *testing.T) {
	s := hstest.Start(t, func(c *config.Config) {
		c.PasswordMinLength = 10
		c.PasswordRequireDigit = true
		c.PasswordRequireSymbol = true
		c.PasswordRequireLowercase = true
		c.PasswordRequireUppercase = true
	})
	r := s.MustOK(t, "GET", "/_matrix/client/r0/password_policy", "", nil)
	if r.JSON["m.minimum_length"] != float64(10) || r.JSON["m.require_digit"] != true || r.JSON["m.require_symbol"] != true ||
		r.JSON["m.require_lowercase"] != true || r.JSON["m.require_uppercase"] != true {
		t.Fatalf("policy: %s", r.Body)
	}
	cases := map[string]string{
		"Sh0rt!":           "M_PASSWORD_TOO_SHORT",
		"NoDigitsHere!!":   "M_PASSWORD_NO_DIGIT",
		"NoSymbols1234":    "M_PASSWORD_NO_SYMBOL",
		"NO_LOWERCASE_123": "M_PASSWORD_NO_LOWERCASE",
		"no_uppercase_123": "M_PASSWORD_NO_UPPERCASE",
	}
	for pw, code := range cases {
		r := s.Do(t, "POST", "/_matrix/client/v3/register", "", map[string]any{"username": "newbie", "password": pw, "auth": map[string]string{"type": "m.login.dummy"}})
		expectErr(t, r, http.StatusBadRequest, code)
	}
	good := "Correct-Horse-42"
	r = s.MustOK(t, "POST", "/_matrix/client/v3/register", "", map[string]any{"username": "newbie", "password": good, "auth": map[string]string{"type": "m.login.dummy"}})
	token, userID := r.Str("access_token"), r.Str("user_id")
	for pw, code := range cases {
		r := s.Do(t, "POST", "/_matrix/client/v3/account/password", token, map[string]any{"new_password": pw,
			"auth": map[string]any{"type": "m.login.password", "identifier": map[string]string{"type": "m.id.user", "user": userID}, "password": good}})
		expectErr(t, r, http.StatusBadRequest, code)
	}
	s.MustOK(t, "POST", "/_matrix/client/v3/account/password", token, map[string]any{"new_password": "Another-Horse-43",
		"auth": map[string]any{"type": "m.login.password", "identifier": map[string]string{"type": "m.id.user", "user": userID}, "password": good}})
}
