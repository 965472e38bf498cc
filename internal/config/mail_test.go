package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The mail settings come from flags, env and file like the others, and the
// combinations that cannot work are refused with the key named.
func TestMailSettings(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(file, []byte("email_domains: /etc/conclave/domains\nsmtp_from: \"Conclave <noreply@example.org>\"\npublic_base_url: https://matrix.example.org\n"), 0o600)
	env := map[string]string{"CONCLAVE_SMTP_URL": "smtp://u:p@mail.example.org:587"}
	cfg, err := Load([]string{"--config", file, "--enable-registration"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.EmailDomains != "/etc/conclave/domains" || cfg.SMTPURL != "smtp://u:p@mail.example.org:587" || cfg.SMTPFrom != "Conclave <noreply@example.org>" {
		t.Fatalf("got %+v", cfg)
	}
	if !strings.Contains(Usage(), "--email-domains") || !strings.Contains(Usage(), "CONCLAVE_SMTP_URL") {
		t.Error("usage does not describe the mail settings")
	}
	none := func(string) string { return "" }
	for name, c := range map[string]struct {
		args []string
		key  string
	}{
		"bad url":              {[]string{"--smtp-url", "http://x", "--smtp-from", "a@b.org", "--public-base-url", "https://m.b.org"}, "smtp_url"},
		"no from":              {[]string{"--smtp-url", "smtp://x"}, "smtp_from"},
		"no base url":          {[]string{"--smtp-url", "smtp://x", "--smtp-from", "a@b.org"}, "public_base_url"},
		"relative base":        {[]string{"--smtp-url", "smtp://x", "--smtp-from", "a@b.org", "--public-base-url", "/x"}, "public_base_url"},
		"registration no mail": {[]string{"--email-domains", "f", "--enable-registration"}, "email_domains"},
	} {
		_, err := Load(c.args, none)
		if err == nil || !strings.Contains(err.Error(), c.key) {
			t.Errorf("%s: %v does not name %q", name, err, c.key)
		}
	}
	// The map alone (no registration here: SSO, /info) needs no mail.
	if _, err := Load([]string{"--email-domains", "f"}, none); err != nil {
		t.Error(err)
	}
}
