package homeserver_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"conclave/internal/config"
	"conclave/internal/homeserver"
	"conclave/internal/homeserver/hstest"
	"conclave/internal/mail"
	"conclave/internal/mail/mailtest"
	"conclave/internal/tlsutil/tlstest"
)

// The server's mailer speaks STARTTLS to a mail server whose certificate
// only tls_ca_cert vouches for, and the domain map is loaded at start.
func TestMailerTrustsTheOperatorsCA(t *testing.T) {
	ca := tlstest.NewCA(t, tlstest.ECPKCS8)
	smtp := mailtest.Start(t, mailtest.Options{CA: ca, Username: "hs", Password: "pw"})
	domains := filepath.Join(t.TempDir(), "domains")
	os.WriteFile(domains, []byte("example.org localhost\n* ext.example.org\n"), 0o600)
	s := hstest.Start(t, func(c *config.Config) {
		c.TLSCACert, c.TLSCAKey = ca.CertFile, ca.KeyFile
		c.SMTPURL, c.SMTPFrom, c.PublicBaseURL = smtp.URL, "noreply@example.org", "https://matrix.example.org"
		c.EmailDomains = domains
	})
	if server, external, ok := s.HS.EmailDomains.Lookup("a@example.org"); server != "localhost" || external || !ok {
		t.Fatalf("map: %q %v %v", server, external, ok)
	}
	if err := s.HS.Mailer.Send(context.Background(), mail.Message{To: "a@example.org", Subject: "s", Text: "t"}); err != nil {
		t.Fatal(err)
	}
	if m := smtp.Wait(t, "a@example.org", 1); !m.TLS || m.Auth != "hs" {
		t.Errorf("TLS %v auth %q", m.TLS, m.Auth)
	}
}

func TestBadDomainMapStopsTheStart(t *testing.T) {
	domains := filepath.Join(t.TempDir(), "domains")
	os.WriteFile(domains, []byte("example.org\n"), 0o600)
	cfg := hstest.Default(t)
	cfg.EmailDomains = domains
	_, err := homeserver.New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), "email_domains: "+domains+": line 1") {
		t.Fatalf("got %v", err)
	}
}
