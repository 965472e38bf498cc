package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Single sign-on and account validity come from flags, env and file like
// the others; combinations that cannot work are refused with the key named.
func TestSSOAndValiditySettings(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(file, []byte("oidc_issuer: https://idp.example.org\noidc_client_id: conclave\npublic_base_url: https://matrix.example.org\nsso_redirect_allow: [\"https://app.example.org\", \"im.tchap://login\"]\nexternal_account_validity: 90d\n"), 0o600)
	env := map[string]string{"CONCLAVE_OIDC_CLIENT_SECRET": "s3cret"}
	cfg, err := Load([]string{"--config", file, "--password-login=false", "--account-renewal-notice", "3d"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OIDCIssuer != "https://idp.example.org" || cfg.OIDCClientSecret != "s3cret" || cfg.PasswordLogin || len(cfg.SSORedirectAllow) != 2 ||
		cfg.ExternalAccountValidity.Duration != 90*24*time.Hour || cfg.AccountRenewalNotice.Duration != 72*time.Hour {
		t.Fatalf("got %+v", cfg)
	}
	for _, k := range []string{"--oidc-issuer", "--oidc-client-id", "--oidc-client-secret", "--password-login", "--external-account-validity", "CONCLAVE_SSO_REDIRECT_ALLOW"} {
		if !strings.Contains(Usage(), k) {
			t.Errorf("usage does not describe %s", k)
		}
	}
	none := func(string) string { return "" }
	for name, c := range map[string]struct {
		args []string
		key  string
	}{
		"no client id":         {[]string{"--oidc-issuer", "https://idp.example.org", "--public-base-url", "https://m.example.org"}, "oidc_client_id"},
		"no base URL":          {[]string{"--oidc-issuer", "https://idp.example.org", "--oidc-client-id", "c"}, "public_base_url"},
		"bad issuer":           {[]string{"--oidc-issuer", "idp.example.org", "--oidc-client-id", "c"}, "oidc_issuer"},
		"nobody could log in":  {[]string{"--password-login=false"}, "password_login"},
		"bad allowed client":   {[]string{"--sso-redirect-allow", "app.example.org"}, "sso_redirect_allow"},
		"validity too short":   {[]string{"--external-account-validity", "5m"}, "external_account_validity"},
		"validity not a value": {[]string{"--external-account-validity", "ninety"}, "--external-account-validity"},
	} {
		_, err := Load(c.args, none)
		var ce *Error
		if !errors.As(err, &ce) || ce.Key != c.key {
			t.Errorf("%s: %v, want key %s", name, err, c.key)
		}
	}
}
