// Package fedclient is the Matrix federation client: every request this
// server makes to another homeserver goes through it. It checks the
// closed-circle allow list before anything else (no lookup, no connection
// for a server outside it), finds the server (spec §Resolving server names:
// IP literal, explicit port, /.well-known/matrix/server with caching and
// back-off, SRV, 8448), connects through internal/outbound (address policy,
// verified TLS for the right name, timeouts, bounded bodies), signs every
// request with X-Matrix (internal/xmatrix) and returns the remote's errors
// as *Error. Connections are kept and reused per destination.
package fedclient

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"conclave/internal/event"
	"conclave/internal/matrix"
	"conclave/internal/outbound"
	"conclave/internal/xmatrix"
)

// Options configure a Client.
type Options struct {
	ServerName string            // ours: the X-Matrix origin
	Key        *event.SigningKey // signs every request
	// Allow is federation_allow: when not empty only these servers are
	// contacted; any other name fails with outbound.ErrNotAllowed before
	// any lookup or connection.
	Allow []string
	// AllowPrivate lets discovery lead to private and loopback addresses
	// (federation_allow_private_addresses). Servers named in Allow may
	// always be reached there: naming them is the operator's permission.
	AllowPrivate bool
	// ExtraCAs are trusted besides the system roots (tls_ca_cert).
	ExtraCAs []*x509.Certificate
	// Resolver answers DNS; nil is net.DefaultResolver.
	Resolver Resolver
	// Now is the clock of the well-known cache; nil is time.Now.
	Now func() time.Time
	// DefaultPort (8448) and WellKnownPort (443) are the spec's ports;
	// tests, which cannot bind them, set others.
	DefaultPort, WellKnownPort int
	// RequestTimeout bounds one request with its answer (60s); the calls
	// with large answers (send_join, state, event_auth) get five times it.
	RequestTimeout time.Duration
}

// Response body limits: a few MiB for ordinary answers; a room's whole
// state (send_join, /state, /event_auth) may be far larger.
const (
	DefaultMaxBody = 8 << 20
	LargeMaxBody   = 64 << 20
	// errorBodyKept is how much of an error answer Error.Body keeps.
	errorBodyKept = 1 << 10
)

// Client talks to other homeservers.
type Client struct {
	serverName    string
	key           *event.SigningKey
	allow         *outbound.AllowList
	out           *outbound.Client
	http          *http.Client
	resolver      Resolver
	now           func() time.Time
	defaultPort   int
	wellKnownPort int
	timeout       time.Duration
	wk            *wellKnown
}

// New builds a client.
func New(opts Options) *Client {
	c := &Client{
		serverName:    opts.ServerName,
		key:           opts.Key,
		allow:         outbound.NewAllowList(opts.Allow),
		resolver:      opts.Resolver,
		now:           opts.Now,
		defaultPort:   opts.DefaultPort,
		wellKnownPort: opts.WellKnownPort,
		timeout:       opts.RequestTimeout,
		wk:            newWellKnown(),
	}
	if c.resolver == nil {
		c.resolver = net.DefaultResolver
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.defaultPort == 0 {
		c.defaultPort = 8448
	}
	if c.wellKnownPort == 0 {
		c.wellKnownPort = 443
	}
	if c.timeout <= 0 {
		c.timeout = 60 * time.Second
	}
	// With a closed circle every server contacted is one the operator
	// named, so private addresses are theirs to use (docs/federation.md).
	allowPrivate := opts.AllowPrivate || !c.allow.Open()
	c.out = outbound.New(outbound.Config{ExtraCAs: opts.ExtraCAs, AllowPrivate: allowPrivate, Resolver: c.resolver})
	// One transport for federation: its pool is keyed by the destination
	// server name (the URL host), and its TLS dialer connects where
	// discovery said, verifying the certificate for the name discovery
	// said (never the URL host, which may be a delegating name).
	c.http = &http.Client{Transport: c.out.NewTransport(c.dialTLS), CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse // federation endpoints do not redirect
	}}
	return c
}

// Allowed reports whether server may be contacted (federation_allow).
func (c *Client) Allowed(server string) bool { return c.allow.Allowed(server) }

// AllowList is the closed circle this client enforces.
func (c *Client) AllowList() *outbound.AllowList { return c.allow }

// CloseIdleConnections closes kept connections.
func (c *Client) CloseIdleConnections() {
	c.http.CloseIdleConnections()
	c.out.CloseIdleConnections()
}

type targetKey struct{}

type dialTarget struct {
	Target
	urlAddr string // the transport's addr for the URL: destination with port
}

// dialTLS connects for the transport to the discovered target carried by
// the request's context, trying its addresses in order.
func (c *Client) dialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	t, ok := ctx.Value(targetKey{}).(*dialTarget)
	if !ok || t.urlAddr != addr {
		return nil, fmt.Errorf("fedclient: no resolved target for %s", addr)
	}
	var firstErr error
	for _, a := range t.Addrs {
		conn, err := c.out.DialTLS(ctx, a, t.TLSName)
		if err == nil {
			return conn, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, firstErr
}

// Error is a federation request the remote server answered with a status
// other than 200.
type Error struct {
	Destination, Method, Path string
	Status                    int
	Errcode, Message          string // from a Matrix error body, if any
	Body                      []byte // the start of the answer
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%s %s on %s: status %d", e.Method, e.Path, e.Destination, e.Status)
	if e.Errcode != "" {
		s += " " + e.Errcode
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// request is one call.
type request struct {
	method, dest, path string
	query              url.Values
	body               any
	out                any
	maxBody            int64
	timeout            time.Duration
	unsigned           bool
	// stream, when set, takes a 200 answer as it arrives (its body
	// unread; the request's timeout still runs) instead of out.
	stream func(*http.Response) error
}

// Do sends a signed request to destination and decodes a 200 answer into
// out (nil: discarded; *json.RawMessage or *[]byte: the raw body; anything
// else: JSON-decoded). path is the escaped path from /_matrix; body is nil
// (no body), []byte or json.RawMessage (sent as is: must be JSON), or a
// value sent as JSON. A non-200 answer is an *Error; a destination outside
// federation_allow fails with outbound.ErrNotAllowed before any lookup or
// connection.
func (c *Client) Do(ctx context.Context, method, destination, path string, query url.Values, body any, out any) error {
	return c.do(ctx, request{method: method, dest: destination, path: path, query: query, body: body, out: out})
}

func (c *Client) do(ctx context.Context, r request) error {
	if err := c.allow.Check(r.dest); err != nil {
		return err
	}
	if !matrix.ValidServerName(r.dest) {
		return fmt.Errorf("fedclient: %q is not a valid server name", r.dest)
	}
	if !strings.HasPrefix(r.path, "/_matrix/") {
		return fmt.Errorf("fedclient: path %q is not under /_matrix/", r.path)
	}
	var content []byte
	switch b := r.body.(type) {
	case nil:
	case []byte:
		content = b
	case json.RawMessage:
		content = b
	default:
		var err error
		if content, err = json.Marshal(b); err != nil {
			return fmt.Errorf("fedclient: request body: %w", err)
		}
	}
	if r.method == http.MethodPut || r.method == http.MethodPost {
		if len(content) == 0 {
			content = []byte("{}") // the spec requires a JSON object
		}
	}
	u, err := url.Parse("https://" + r.dest + r.path)
	if err != nil {
		return fmt.Errorf("fedclient: %w", err)
	}
	u.RawQuery = r.query.Encode()
	tgt, err := c.Resolve(ctx, r.dest)
	if err != nil {
		return fmt.Errorf("fedclient: resolving %s: %w", r.dest, err)
	}
	port := u.Port()
	if port == "" {
		port = "443"
	}
	dt := &dialTarget{Target: tgt, urlAddr: net.JoinHostPort(u.Hostname(), port)}
	timeout := r.timeout
	if timeout == 0 {
		timeout = c.timeout
	}
	ctx, cancel := context.WithTimeout(context.WithValue(ctx, targetKey{}, dt), timeout)
	defer cancel()
	var rd io.Reader
	if content != nil {
		rd = bytes.NewReader(content)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), rd)
	if err != nil {
		return fmt.Errorf("fedclient: %w", err)
	}
	req.Host = tgt.Host
	req.Header.Set("User-Agent", "Conclave")
	if content != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if !r.unsigned {
		// The signed uri is exactly what the request line carries.
		h, err := xmatrix.Sign(c.key, r.method, req.URL.RequestURI(), c.serverName, r.dest, content)
		if err != nil {
			return fmt.Errorf("fedclient: signing: %w", err)
		}
		req.Header.Set("Authorization", h.String())
	}
	res, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("fedclient: %s %s on %s: %w", r.method, r.path, r.dest, err)
	}
	defer res.Body.Close()
	if r.stream != nil && res.StatusCode == http.StatusOK {
		return r.stream(res)
	}
	maxBody := r.maxBody
	if maxBody == 0 {
		maxBody = DefaultMaxBody
	}
	data, err := outbound.ReadBody(res.Body, maxBody)
	if err != nil {
		return fmt.Errorf("fedclient: %s %s on %s: reading the answer: %w", r.method, r.path, r.dest, err)
	}
	if res.StatusCode != http.StatusOK {
		e := &Error{Destination: r.dest, Method: r.method, Path: r.path, Status: res.StatusCode}
		var me struct {
			Errcode string `json:"errcode"`
			Error   string `json:"error"`
		}
		if json.Unmarshal(data, &me) == nil {
			e.Errcode, e.Message = me.Errcode, me.Error
		}
		e.Body = data[:min(len(data), errorBodyKept)]
		return e
	}
	switch o := r.out.(type) {
	case nil:
		return nil
	case *json.RawMessage:
		if !json.Valid(data) {
			return fmt.Errorf("fedclient: %s %s on %s: answer is not JSON", r.method, r.path, r.dest)
		}
		*o = data
	case *[]byte:
		*o = data
	default:
		if err := json.Unmarshal(data, o); err != nil {
			return fmt.Errorf("fedclient: %s %s on %s: answer: %w", r.method, r.path, r.dest, err)
		}
	}
	return nil
}

// IsNotAllowed reports whether err is a refusal by federation_allow.
func IsNotAllowed(err error) bool { return errors.Is(err, outbound.ErrNotAllowed) }
