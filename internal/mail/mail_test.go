package mail_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"conclave/internal/mail"
	"conclave/internal/mail/mailtest"
	"conclave/internal/tlsutil/tlstest"
)

func trusting(ca *tlstest.CA) func(string) *tls.Config {
	return func(string) *tls.Config {
		// Shaped like internal/outbound's: NextProtos must not reach SMTP.
		return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: ca.Pool(), NextProtos: []string{"http/1.1"}}
	}
}

func send(t *testing.T, cfg mail.SMTPConfig, m mail.Message) error {
	t.Helper()
	s, err := mail.NewSMTP(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s.Send(context.Background(), m)
}

var notice = mail.Message{
	To:      "jean.martin@finances.gouv.fr",
	Subject: "Vérifiez votre adresse\r\nBcc: victim@example.org",
	Text:    "Bonjour,\n\nvotre code : 123456\nhttps://matrix.example.org/_matrix/client/v3/validate?sid=abc&token=" + strings.Repeat("x", 100) + "\n.\nFin.",
}

func checkNotice(t *testing.T, m mailtest.Mail) {
	t.Helper()
	if m.From != "noreply@example.org" || len(m.To) != 1 || m.To[0] != notice.To {
		t.Errorf("envelope %q → %v", m.From, m.To)
	}
	if m.Subject != "Vérifiez votre adresse  Bcc: victim@example.org" {
		t.Errorf("subject %q", m.Subject)
	}
	if m.Header.Get("Bcc") != "" || strings.Contains(string(m.Raw), "\r\nBcc:") {
		t.Error("a header was injected through the subject")
	}
	if m.Text != notice.Text+"\n" {
		t.Errorf("body %q\nwant %q", m.Text, notice.Text)
	}
	if from, err := m.Header.AddressList("From"); err != nil || len(from) != 1 || from[0].Name != "Conclave" || from[0].Address != "noreply@example.org" || m.Header.Get("To") != notice.To {
		t.Errorf("headers From %q To %q", m.Header.Get("From"), m.Header.Get("To"))
	}
	if m.Header.Get("Message-Id") == "" || m.Header.Get("Date") == "" {
		t.Error("no Message-ID or Date")
	}
}

func TestStartTLSWithAuth(t *testing.T) {
	ca := tlstest.NewCA(t, tlstest.ECPKCS8)
	srv := mailtest.Start(t, mailtest.Options{CA: ca, Username: "conclave", Password: "s3cret:/@"})
	if err := send(t, mail.SMTPConfig{URL: srv.URL, From: "Conclave <noreply@example.org>", TLS: trusting(ca)}, notice); err != nil {
		t.Fatal(err)
	}
	m := srv.Wait(t, notice.To, 1)
	checkNotice(t, m)
	if !m.TLS || m.Auth != "conclave" {
		t.Errorf("TLS %v, auth %q", m.TLS, m.Auth)
	}
}

func TestImplicitTLSAndLogin(t *testing.T) {
	ca := tlstest.NewCA(t, tlstest.ECPKCS8)
	srv := mailtest.Start(t, mailtest.Options{CA: ca, Implicit: true, Username: "u", Password: "p", Login: true})
	if !strings.HasPrefix(srv.URL, "smtps://") {
		t.Fatal(srv.URL)
	}
	if err := send(t, mail.SMTPConfig{URL: srv.URL, From: "Conclave <noreply@example.org>", TLS: trusting(ca)}, notice); err != nil {
		t.Fatal(err)
	}
	m := srv.Wait(t, notice.To, 1)
	if !m.TLS || m.Auth != "u" {
		t.Errorf("TLS %v, auth %q", m.TLS, m.Auth)
	}
}

// A relay without STARTTLS gets the mail in the clear (a second connection,
// after go-smtp's refusal to upgrade: this pins that error's text).
func TestPlainServerWithoutStartTLS(t *testing.T) {
	srv := mailtest.Start(t, mailtest.Options{})
	if err := send(t, mail.SMTPConfig{URL: srv.URL, From: "Conclave <noreply@example.org>"}, notice); err != nil {
		t.Fatal(err)
	}
	m := srv.Wait(t, notice.To, 1)
	checkNotice(t, m)
	if m.TLS {
		t.Error("TLS on a server without a certificate")
	}
}

// Credentials go in the clear only to a loopback address.
func TestCredentialsNeverInTheClearToAnotherHost(t *testing.T) {
	srv := mailtest.Start(t, mailtest.Options{Username: "u", Password: "p"})
	if err := send(t, mail.SMTPConfig{URL: srv.URL, From: "noreply@example.org"}, notice); err != nil {
		t.Fatalf("loopback: %v", err)
	}
	// The same server seen from a distance: the connection claims a
	// documentation address as its peer.
	far := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return farConn{c}, nil
	}
	err := send(t, mail.SMTPConfig{URL: srv.URL, From: "noreply@example.org", Dial: far}, notice)
	if !errors.Is(err, mail.ErrNoTLSForCredentials) {
		t.Fatalf("got %v", err)
	}
	if n := srv.Count(notice.To); n != 1 {
		t.Errorf("%d mails delivered, want 1", n)
	}
}

type farConn struct{ net.Conn }

func (farConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 25} }

func TestRefusals(t *testing.T) {
	ca := tlstest.NewCA(t, tlstest.ECPKCS8)
	other := tlstest.NewCA(t, tlstest.ECPKCS8)
	srv := mailtest.Start(t, mailtest.Options{CA: ca, Username: "u", Password: "p"})
	// A certificate from a CA not trusted: no mail, and no fallback to the clear.
	if err := send(t, mail.SMTPConfig{URL: srv.URL, From: "noreply@example.org", TLS: trusting(other)}, notice); err == nil || !strings.Contains(err.Error(), "STARTTLS") {
		t.Errorf("untrusted certificate: %v", err)
	}
	wrong := strings.Replace(srv.URL, "u:p@", "u:wrong@", 1)
	if err := send(t, mail.SMTPConfig{URL: wrong, From: "noreply@example.org", TLS: trusting(ca)}, notice); err == nil || !strings.Contains(err.Error(), "authentication") {
		t.Errorf("wrong password: %v", err)
	}
	noAuth := strings.Replace(srv.URL, "u:p@", "", 1)
	if err := send(t, mail.SMTPConfig{URL: noAuth, From: "noreply@example.org", TLS: trusting(ca)}, notice); err == nil {
		t.Error("sent without the credentials the server requires")
	}
	for _, to := range []string{"", "a@b.org, c@d.org", "Name <a@b.org>", "a@b.org\r\nData"} {
		m := notice
		m.To = to
		if err := send(t, mail.SMTPConfig{URL: srv.URL, From: "noreply@example.org", TLS: trusting(ca)}, m); err == nil {
			t.Errorf("sent to %q", to)
		}
	}
	if n := len(srv.Mails()); n != 0 {
		t.Errorf("%d mails delivered", n)
	}
}

// A server that never answers holds Send only until the context ends.
func TestContextBoundsSend(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	s, err := mail.NewSMTP(mail.SMTPConfig{URL: "smtp://" + ln.Addr().String(), From: "noreply@example.org"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Send(ctx, notice) }()
	c := <-accepted
	defer c.Close()
	cancel()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("Send succeeded against a silent server")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Send did not return after its context ended")
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []struct{ url, from, want string }{
		{"http://h:25", "a@b.org", "smtp:// or smtps://"},
		{"smtp://", "a@b.org", "no host"},
		{"smtp://h:0", "a@b.org", "port"},
		{"smtp://h:99999", "a@b.org", "port"},
		{"smtp://h:25/path", "a@b.org", "nothing after the host"},
		{"smtp://h:25?x=1", "a@b.org", "nothing after the host"},
		{"smtp://h", "not an address", "smtp_from"},
		{"smtp://h", "", "smtp_from"},
	} {
		_, err := mail.NewSMTP(mail.SMTPConfig{URL: c.url, From: c.from})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q %q: %v, want %q", c.url, c.from, err, c.want)
		}
	}
	for _, ok := range []string{"smtp://h", "smtps://h", "smtp://u:p@h:587", "smtp://u:p%40x@[::1]:25/"} {
		if err := mail.ValidateURL(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}
