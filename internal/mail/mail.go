// Package mail owns sending e-mail: the Sender interface the services use
// (verification codes, password resets, later notifications) and its SMTP
// implementation configured by `--smtp-url` and `--smtp-from`. It builds
// the message itself (plain-text UTF-8, quoted-printable, encoded headers)
// and speaks SMTP with github.com/emersion/go-smtp. Package mailtest has a
// real SMTP server that captures what is sent, for tests.
package mail

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	stdmail "net/mail"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Message is one mail to one recipient.
type Message struct {
	To      string // a plain address
	Subject string
	Text    string // the plain-text body
}

// Sender sends mail. Send returns once the mail server accepted the message
// (or refused it); it does not retry.
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// Limits on what is sent: a header line may not run away, and a body is a
// short notice, not a newsletter.
const (
	MaxSubjectBytes = 998
	MaxTextBytes    = 64 << 10
)

// SMTPConfig configures an SMTP sender.
type SMTPConfig struct {
	// URL is smtp://[user[:password]@]host[:port] (STARTTLS when the
	// server offers it, port 25 by default) or smtps://… (TLS from the
	// first byte, port 465 by default). Credentials are sent only over TLS,
	// or in the clear to a loopback address.
	URL string
	// From is the sender, "noreply@example.org" or
	// "Example <noreply@example.org>".
	From string
	// Dial opens the TCP connection; nil is a net.Dialer. The homeserver
	// passes internal/outbound's dialer, so the address policy and timeouts
	// are the outbound layer's.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// TLS returns the client TLS configuration for a host name: the roots
	// trusted (the system's plus tls_ca_cert, as internal/outbound does);
	// nil trusts the system roots only.
	TLS func(serverName string) *tls.Config
	// Timeout bounds one Send from dial to QUIT (an earlier deadline of
	// the caller's context wins); zero is 30 seconds.
	Timeout time.Duration
}

// SMTP sends each message over a fresh connection: mail here is rare (one
// per verification or reset), so nothing is kept open.
type SMTP struct {
	cfg      SMTPConfig
	addr     string // host:port
	host     string
	implicit bool // smtps
	user     string
	pass     string
	hasAuth  bool
	from     string // the envelope sender, a plain address
	fromHdr  string // the From header as given, encoded
	hostname string // the From domain, for Message-ID
}

// ValidateURL checks an smtp_url without building a sender (config
// validation).
func ValidateURL(raw string) error {
	_, err := parseURL(raw)
	return err
}

type parsedURL struct {
	host, addr, user, pass string
	implicit, hasAuth      bool
}

func parseURL(raw string) (parsedURL, error) {
	var p parsedURL
	u, err := url.Parse(raw)
	if err != nil {
		return p, errors.New("not a URL")
	}
	switch u.Scheme {
	case "smtp":
	case "smtps":
		p.implicit = true
	default:
		return p, errors.New("must start with smtp:// or smtps://")
	}
	if u.Host == "" || u.Hostname() == "" {
		return p, errors.New("names no host")
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return p, errors.New("must be smtp://[user[:password]@]host[:port] with nothing after the host")
	}
	p.host = u.Hostname()
	port := u.Port()
	if port == "" {
		port = "25"
		if p.implicit {
			port = "465"
		}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return p, errors.New("port must be between 1 and 65535")
	}
	p.addr = net.JoinHostPort(p.host, port)
	if u.User != nil {
		p.hasAuth = true
		p.user = u.User.Username()
		p.pass, _ = u.User.Password()
	}
	return p, nil
}

// NewSMTP checks the configuration and returns a sender.
func NewSMTP(cfg SMTPConfig) (*SMTP, error) {
	p, err := parseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("smtp_url: %w", err)
	}
	from, err := stdmail.ParseAddress(cfg.From)
	if err != nil {
		return nil, fmt.Errorf("smtp_from: %q is not an e-mail address", cfg.From)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Dial == nil {
		d := &net.Dialer{Timeout: 10 * time.Second}
		cfg.Dial = d.DialContext
	}
	return &SMTP{cfg: cfg, addr: p.addr, host: p.host, implicit: p.implicit, user: p.user, pass: p.pass, hasAuth: p.hasAuth,
		from: from.Address, fromHdr: from.String(), hostname: from.Address[strings.LastIndexByte(from.Address, '@')+1:]}, nil
}

// ErrNoTLSForCredentials is returned when credentials are configured, the
// server offers no STARTTLS, and it is not on a loopback address.
var ErrNoTLSForCredentials = errors.New("smtp: the server offers no STARTTLS; credentials are not sent in the clear")

func (s *SMTP) tlsConfig() *tls.Config {
	var c *tls.Config
	if s.cfg.TLS != nil {
		c = s.cfg.TLS(s.host).Clone()
	} else {
		c = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	c.ServerName = s.host
	// The outbound layer announces http/1.1 for its HTTP connections; an
	// SMTP server must not be told that.
	c.NextProtos = nil
	return c
}

// Send delivers m through the configured server.
func (s *SMTP) Send(ctx context.Context, m Message) error {
	data, rcpt, err := s.compose(m, time.Now())
	if err != nil {
		return err
	}
	// Ending this context closes the connection (guard), whatever the
	// caller's context does later.
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	c, conn, encrypted, err := s.open(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if s.hasAuth {
		if !encrypted && !loopback(conn.RemoteAddr()) {
			return ErrNoTLSForCredentials
		}
		var auth sasl.Client
		switch {
		case c.SupportsAuth(sasl.Plain):
			auth = sasl.NewPlainClient("", s.user, s.pass)
		case c.SupportsAuth(sasl.Login):
			auth = sasl.NewLoginClient(s.user, s.pass)
		default:
			return errors.New("smtp: the server offers neither AUTH PLAIN nor AUTH LOGIN")
		}
		if err := c.Auth(auth); err != nil {
			return fmt.Errorf("smtp: authentication: %w", err)
		}
	}
	if err := c.SendMail(s.from, []string{rcpt}, bytes.NewReader(data)); err != nil {
		return fmt.Errorf("smtp: sending to %s: %w", rcpt, err)
	}
	return c.Quit()
}

// open connects and says hello: over TLS from the start for smtps; for
// smtp with STARTTLS when the server offers it, else in the clear. go-smtp
// cannot upgrade a client that already said EHLO, so a server without
// STARTTLS costs a second connection (rare: local relays).
func (s *SMTP) open(ctx context.Context) (c *smtp.Client, conn net.Conn, encrypted bool, err error) {
	if s.implicit {
		conn, err = s.dial(ctx)
		if err != nil {
			return nil, nil, false, err
		}
		tc := tls.Client(s.guard(ctx, conn), s.tlsConfig())
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, nil, false, fmt.Errorf("smtp: TLS with %s: %w", s.addr, err)
		}
		return s.client(ctx, smtp.NewClient(tc)), conn, true, nil
	}
	conn, err = s.dial(ctx)
	if err != nil {
		return nil, nil, false, err
	}
	c, err = smtp.NewClientStartTLS(s.guard(ctx, conn), s.tlsConfig())
	if err == nil {
		// The handshake happens at the next command; a failure there must
		// end the send here, not surface later as a missing extension.
		if err := s.client(ctx, c).Hello("localhost"); err != nil {
			c.Close()
			return nil, nil, false, fmt.Errorf("smtp: STARTTLS with %s: %w", s.addr, err)
		}
		return c, conn, true, nil
	}
	conn.Close()
	if err.Error() != errNoStartTLS {
		return nil, nil, false, fmt.Errorf("smtp: STARTTLS with %s: %w", s.addr, err)
	}
	conn, err = s.dial(ctx)
	if err != nil {
		return nil, nil, false, err
	}
	return s.client(ctx, smtp.NewClient(s.guard(ctx, conn))), conn, false, nil
}

// errNoStartTLS is go-smtp's error (v0.26.0) when the server does not offer
// STARTTLS; TestPlainServerWithoutStartTLS pins it.
const errNoStartTLS = "smtp: server doesn't support STARTTLS"

func (s *SMTP) dial(ctx context.Context) (net.Conn, error) {
	conn, err := s.cfg.Dial(ctx, "tcp", s.addr)
	if err != nil {
		return nil, fmt.Errorf("smtp: dial %s: %w", s.addr, err)
	}
	return conn, nil
}

// guard closes conn when ctx ends: go-smtp takes no context, and sets its
// own per-command deadlines on the connection.
func (s *SMTP) guard(ctx context.Context, conn net.Conn) net.Conn {
	context.AfterFunc(ctx, func() { conn.Close() })
	return conn
}

// client sets go-smtp's per-command timeouts to what is left of ctx.
func (s *SMTP) client(ctx context.Context, c *smtp.Client) *smtp.Client {
	left := s.cfg.Timeout
	if dl, ok := ctx.Deadline(); ok {
		left = time.Until(dl)
	}
	c.CommandTimeout, c.SubmissionTimeout = left, left
	return c
}

func loopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return false
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	return ok && ip.Unmap().IsLoopback()
}

// compose renders m as an RFC 5322 message with CRLF line ends and returns
// it with the recipient's address.
func (s *SMTP) compose(m Message, now time.Time) ([]byte, string, error) {
	to, err := stdmail.ParseAddress(m.To)
	if err != nil || to.Address != strings.TrimSpace(m.To) {
		return nil, "", fmt.Errorf("mail: %q is not a plain e-mail address", m.To)
	}
	if len(m.Subject) > MaxSubjectBytes || len(m.Text) > MaxTextBytes {
		return nil, "", errors.New("mail: subject or body too long")
	}
	var id [12]byte
	rand.Read(id[:])
	var b bytes.Buffer
	header := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	header("From", s.fromHdr)
	header("To", to.Address)
	header("Subject", mime.QEncoding.Encode("utf-8", oneLine(m.Subject)))
	header("Date", now.UTC().Format(time.RFC1123Z))
	header("Message-ID", "<"+hex.EncodeToString(id[:])+"@"+s.hostname+">")
	header("MIME-Version", "1.0")
	header("Content-Type", "text/plain; charset=utf-8")
	header("Content-Transfer-Encoding", "quoted-printable")
	header("Auto-Submitted", "auto-generated")
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	text := strings.ReplaceAll(strings.ReplaceAll(m.Text, "\r\n", "\n"), "\n", "\r\n")
	if !strings.HasSuffix(text, "\r\n") {
		text += "\r\n"
	}
	if _, err := qp.Write([]byte(text)); err != nil {
		return nil, "", err
	}
	if err := qp.Close(); err != nil {
		return nil, "", err
	}
	return b.Bytes(), to.Address, nil
}

// oneLine keeps a header value on one line: a CR or LF from anywhere cannot
// start a header of its own.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}
