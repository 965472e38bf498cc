// Package mailtest runs a real SMTP server (github.com/emersion/go-smtp) on
// loopback that keeps every mail delivered to it, so tests read the
// verification code or link out of the mail the server really sent.
package mailtest

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"conclave/internal/tlsutil"
	"conclave/internal/tlsutil/tlstest"
)

// Mail is one delivered message.
type Mail struct {
	From    string   // envelope sender
	To      []string // envelope recipients
	Raw     []byte   // the message as received
	Header  mail.Header
	Subject string // decoded
	Text    string // the body, quoted-printable decoded, LF line ends
	// Auth is the user name the client authenticated as ("" if none);
	// TLS whether the session was encrypted.
	Auth string
	TLS  bool
}

// Options shape the server.
type Options struct {
	// CA, when set, gives the server a certificate for 127.0.0.1 signed by
	// it and makes it offer STARTTLS (or, with Implicit, TLS from the
	// first byte: an smtps:// server).
	CA       *tlstest.CA
	Implicit bool
	// Username and Password, when set, are the only credentials accepted
	// (AUTH PLAIN, and AUTH LOGIN when Login), and mail is refused before
	// authentication. Without TLS, authentication is allowed in the clear.
	Username, Password string
	Login              bool
}

// Server is a running capture server.
type Server struct {
	// URL is the smtp:// (or smtps://) URL to give --smtp-url, with the
	// credentials when Options has them; Addr is host:port.
	URL, Addr string

	srv  *smtp.Server
	opts Options

	mu      sync.Mutex
	mails   []Mail
	arrived chan struct{} // closed and replaced at every delivery
}

// Start runs a server until the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s := &Server{opts: opts, arrived: make(chan struct{})}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{s: s, conn: c}, nil
	}))
	s.srv.Domain = "mailtest.invalid"
	s.srv.MaxMessageBytes = 1 << 20
	s.srv.MaxRecipients = 10
	s.srv.ReadTimeout, s.srv.WriteTimeout = 10*time.Second, 10*time.Second
	s.srv.AllowInsecureAuth = opts.CA == nil
	if opts.CA != nil {
		cert, err := tlsutil.Issue(opts.CA.Cert, opts.CA.Key, "127.0.0.1", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		s.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	var ln net.Listener
	var err error
	if opts.CA != nil && opts.Implicit {
		ln, err = tls.Listen("tcp", "127.0.0.1:0", s.srv.TLSConfig)
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = ln.Addr().String()
	u := url.URL{Scheme: "smtp", Host: s.Addr}
	if opts.CA != nil && opts.Implicit {
		u.Scheme = "smtps"
	}
	if opts.Username != "" {
		u.User = url.UserPassword(opts.Username, opts.Password)
	}
	s.URL = u.String()
	done := make(chan struct{})
	go func() { defer close(done); s.srv.Serve(ln) }()
	t.Cleanup(func() {
		s.srv.Close()
		<-done
	})
	return s
}

// Mails returns every mail delivered so far, oldest first.
func (s *Server) Mails() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.mails...)
}

// Wait returns the n-th mail (counting from 1, over the whole life of the
// server) delivered to the address to, waiting up to 10 seconds for it.
func (s *Server) Wait(t testing.TB, to string, n int) Mail {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		seen := 0
		for _, m := range s.mails {
			for _, r := range m.To {
				if strings.EqualFold(r, to) {
					seen++
					if seen == n {
						s.mu.Unlock()
						return m
					}
				}
			}
		}
		arrived := s.arrived
		s.mu.Unlock()
		select {
		case <-arrived:
		case <-deadline.C:
			t.Fatalf("mailtest: no mail #%d to %s within 10s (%d delivered in all)", n, to, len(s.Mails()))
		}
	}
}

// Count is how many mails were delivered to to.
func (s *Server) Count(to string) int {
	n := 0
	for _, m := range s.Mails() {
		for _, r := range m.To {
			if strings.EqualFold(r, to) {
				n++
			}
		}
	}
	return n
}

func (s *Server) deliver(m Mail) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mails = append(s.mails, m)
	close(s.arrived)
	s.arrived = make(chan struct{})
}

type session struct {
	s    *Server
	conn *smtp.Conn
	auth string
	from string
	to   []string
}

var errAuthRequired = smtp.ErrAuthRequired

func (se *session) AuthMechanisms() []string {
	if se.s.opts.Username == "" {
		return nil
	}
	if se.s.opts.Login {
		return []string{sasl.Login}
	}
	return []string{sasl.Plain}
}

func (se *session) Auth(mech string) (sasl.Server, error) {
	check := func(user, pass string) error {
		if user != se.s.opts.Username || pass != se.s.opts.Password {
			return smtp.ErrAuthFailed
		}
		se.auth = user
		return nil
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, pass string) error {
			if identity != "" && identity != user {
				return smtp.ErrAuthFailed
			}
			return check(user, pass)
		}), nil
	case sasl.Login:
		return newLoginServer(check), nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (se *session) Mail(from string, _ *smtp.MailOptions) error {
	if se.s.opts.Username != "" && se.auth == "" {
		return errAuthRequired
	}
	se.from = from
	return nil
}

func (se *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	se.to = append(se.to, to)
	return nil
}

func (se *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m := Mail{From: se.from, To: append([]string(nil), se.to...), Raw: raw, Auth: se.auth}
	_, m.TLS = se.conn.TLSConnectionState()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return &smtp.SMTPError{Code: 554, Message: "unparseable message: " + err.Error()}
	}
	m.Header = msg.Header
	m.Subject, err = new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		return &smtp.SMTPError{Code: 554, Message: "bad Subject: " + err.Error()}
	}
	var body io.Reader = msg.Body
	if strings.EqualFold(msg.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
		body = quotedprintable.NewReader(body)
	}
	text, err := io.ReadAll(body)
	if err != nil {
		return &smtp.SMTPError{Code: 554, Message: "bad body: " + err.Error()}
	}
	m.Text = strings.ReplaceAll(string(text), "\r\n", "\n")
	se.s.deliver(m)
	return nil
}

func (se *session) Reset()        { se.from, se.to = "", nil }
func (se *session) Logout() error { return nil }

// loginServer is the server side of AUTH LOGIN (go-sasl has only the
// client): "Username:", then "Password:", each answered in base64 by
// go-smtp's framing.
type loginServer struct {
	check func(user, pass string) error
	step  int
	user  string
}

func newLoginServer(check func(user, pass string) error) sasl.Server {
	return &loginServer{check: check}
}

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0:
		l.step++
		if response != nil {
			l.user = string(response)
			l.step++
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 1:
		l.user = string(response)
		l.step++
		return []byte("Password:"), false, nil
	case 2:
		l.step++
		return nil, true, l.check(l.user, string(response))
	}
	return nil, true, errors.New("unexpected response")
}
