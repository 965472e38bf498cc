package homeserver

import (
	"crypto/x509"

	"conclave/internal/emaildomains"
	"conclave/internal/mail"
	"conclave/internal/outbound"
)

// setupMail loads the circle's e-mail domain map (email_domains) and builds
// the SMTP sender (smtp_url), after setupFederation so that tls_ca_cert is
// known. The mail server is the operator's own, often on a private network,
// so the outbound layer's dialer here allows private addresses; TLS trusts
// the system roots and tls_ca_cert, as every outbound connection does.
func (hs *Homeserver) setupMail() error {
	cfg := hs.Config
	if cfg.EmailDomains != "" {
		m, err := emaildomains.Load(cfg.EmailDomains)
		if err != nil {
			return err
		}
		hs.EmailDomains = m
	}
	if cfg.SMTPURL == "" {
		return nil
	}
	var cas []*x509.Certificate
	if hs.TLS != nil {
		cas = hs.TLS.CACerts
	}
	out := outbound.New(outbound.Config{ExtraCAs: cas, AllowPrivate: true})
	s, err := mail.NewSMTP(mail.SMTPConfig{URL: cfg.SMTPURL, From: cfg.SMTPFrom, Dial: out.DialContext, TLS: out.TLSConfig})
	if err != nil {
		return err
	}
	hs.Mailer = s
	return nil
}
