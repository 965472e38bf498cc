// Package outbound is Conclave's one outbound HTTP layer: federation
// (internal/fedclient, remote media and its redirects included), URL
// previews, and push gateways later. It owns what every request leaving the
// server must respect: a dialer that refuses private, loopback, link-local and other
// non-public addresses unless the operator allows them (checked on the
// address actually dialled, after DNS, so a name cannot smuggle a private
// address in), TLS verified against the system roots plus the operator's
// CA, no proxy from the environment, timeouts at every stage, bounded
// response bodies, and no redirects unless the caller checks each hop. The closed-circle allow list (AllowList) lives
// here too, for callers to check before anything is looked up.
package outbound

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// HostResolver looks up a host's addresses; *net.Resolver satisfies it.
// Tests inject answers through it.
type HostResolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Config configures a Client. Zero durations take the defaults shown.
type Config struct {
	// ExtraCAs are trusted besides the system roots (tls_ca_cert: a closed
	// network's CA, Complement's).
	ExtraCAs []*x509.Certificate
	// AllowPrivate lets requests reach non-public addresses (tests, closed
	// networks, Complement's Docker network).
	AllowPrivate bool
	// Resolver resolves host names; nil is net.DefaultResolver.
	Resolver HostResolver

	DialTimeout           time.Duration // one TCP connect: 10s
	TLSHandshakeTimeout   time.Duration // 10s
	ResponseHeaderTimeout time.Duration // from request written to headers: 60s
	Timeout               time.Duration // a whole request with its body through Client.HTTP: 2m
	IdleConnTimeout       time.Duration // 90s
	MaxIdleConnsPerHost   int           // 4
}

// Client makes outbound connections and requests under Config's rules.
type Client struct {
	cfg    Config
	roots  *x509.CertPool
	dialer *net.Dialer
	// HTTP is a plain client: verified TLS, policy-checked dials, the whole
	// request bounded by Config.Timeout, redirects not followed (a 30x is
	// returned as it is). Redirecting gives one that follows checked hops.
	HTTP      *http.Client
	transport *http.Transport
}

// New builds a client. The system roots are read once; when the system has
// none only ExtraCAs are trusted.
func New(cfg Config) *Client {
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.DialTimeout, 10*time.Second)
	def(&cfg.TLSHandshakeTimeout, 10*time.Second)
	def(&cfg.ResponseHeaderTimeout, 60*time.Second)
	def(&cfg.Timeout, 2*time.Minute)
	def(&cfg.IdleConnTimeout, 90*time.Second)
	if cfg.MaxIdleConnsPerHost <= 0 {
		cfg.MaxIdleConnsPerHost = 4
	}
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	for _, c := range cfg.ExtraCAs {
		roots.AddCert(c)
	}
	c := &Client{cfg: cfg, roots: roots}
	c.dialer = &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second, Control: c.control}
	c.transport = c.NewTransport(nil)
	c.HTTP = &http.Client{Transport: c.transport, Timeout: cfg.Timeout, CheckRedirect: noRedirects}
	return c
}

func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Redirecting returns a client sharing c's connections that follows at most
// max redirects, each only if check accepts the next request (its URL: the
// caller decides which schemes and hosts may follow). Every hop still goes
// through the address policy.
func (c *Client) Redirecting(max int, check func(next *http.Request) error) *http.Client {
	h := *c.HTTP
	h.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) > max {
			return fmt.Errorf("outbound: more than %d redirects", max)
		}
		for _, v := range via {
			if v.URL.String() == req.URL.String() {
				return errors.New("outbound: redirect loop")
			}
		}
		if check != nil {
			return check(req)
		}
		return nil
	}
	return &h
}

// NewTransport returns a transport with c's timeouts and limits. dialTLS,
// when not nil, makes the TLS connections (a caller that decides where a
// URL's host really is, such as federation's server discovery); otherwise
// the transport dials through DialContext and verifies the certificate for
// the URL's host. Environment proxies are never used: a proxy would hide
// the address from the policy.
func (c *Client) NewTransport(dialTLS func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Transport {
	return &http.Transport{
		Proxy:                  nil,
		DialContext:            c.DialContext,
		DialTLSContext:         dialTLS,
		TLSClientConfig:        c.TLSConfig(""),
		TLSHandshakeTimeout:    c.cfg.TLSHandshakeTimeout,
		ResponseHeaderTimeout:  c.cfg.ResponseHeaderTimeout,
		IdleConnTimeout:        c.cfg.IdleConnTimeout,
		MaxIdleConnsPerHost:    c.cfg.MaxIdleConnsPerHost,
		MaxResponseHeaderBytes: 64 << 10,
		ExpectContinueTimeout:  time.Second,
	}
}

// CloseIdleConnections closes c.HTTP's idle connections.
func (c *Client) CloseIdleConnections() { c.transport.CloseIdleConnections() }

// TLSConfig returns a client TLS configuration verifying certificates
// against the system roots and the extra CAs for serverName (a host name,
// or an IP address, for which no SNI is sent, as the spec asks). HTTP/1.1
// only: one connection per request in flight keeps a slow transfer from
// holding up the others.
func (c *Client) TLSConfig(serverName string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    c.roots,
		ServerName: serverName,
		NextProtos: []string{"http/1.1"},
	}
}

// DialTLS connects to addr (host:port, resolved and policy-checked like
// DialContext) and completes a TLS handshake verifying the certificate for
// serverName, within the handshake timeout.
func (c *Client) DialTLS(ctx context.Context, addr, serverName string) (*tls.Conn, error) {
	raw, err := c.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, c.cfg.TLSHandshakeTimeout)
	defer cancel()
	conn := tls.Client(raw, c.TLSConfig(serverName))
	if err := conn.HandshakeContext(hctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("TLS with %s (%s): %w", serverName, addr, err)
	}
	return conn, nil
}

// DialContext connects to addr ("host:port"). A host name is resolved with
// the configured resolver and its addresses are tried in order, skipping
// those the policy refuses; when every address is refused the error is
// ErrForbiddenAddress. The dialer's Control hook checks the address once
// more just before connect, whatever path led to it.
func (c *Client) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if !c.permitted(ip) {
			return nil, fmt.Errorf("dial %s: %w", addr, ErrForbiddenAddress)
		}
		return c.dialer.DialContext(ctx, network, addr)
	}
	ipNet := "ip"
	switch network {
	case "tcp4":
		ipNet = "ip4"
	case "tcp6":
		ipNet = "ip6"
	}
	ips, err := c.cfg.Resolver.LookupNetIP(ctx, ipNet, host)
	if err != nil {
		return nil, err
	}
	var firstErr error
	refused := 0
	for _, ip := range ips {
		if !c.permitted(ip) {
			refused++
			continue
		}
		conn, err := c.dialer.DialContext(ctx, network, net.JoinHostPort(ip.Unmap().String(), port))
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
	if firstErr != nil {
		return nil, firstErr
	}
	if refused > 0 {
		return nil, fmt.Errorf("dial %s: every address of %s refused: %w", addr, host, ErrForbiddenAddress)
	}
	return nil, fmt.Errorf("dial %s: no addresses for %s", addr, host)
}

func (c *Client) permitted(ip netip.Addr) bool { return c.cfg.AllowPrivate || !Forbidden(ip) }

// control runs just before connect(2) with the numeric address.
func (c *Client) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("dial %s: %w", address, ErrForbiddenAddress)
	}
	if !c.permitted(ap.Addr()) {
		return fmt.Errorf("dial %s: %w", address, ErrForbiddenAddress)
	}
	return nil
}

// ErrTooLarge is returned by a LimitBody reader past its limit.
var ErrTooLarge = errors.New("outbound: response body too large")

// LimitBody wraps a response body so that reading more than n bytes fails
// with ErrTooLarge (rather than silently truncating, as io.LimitReader
// would: a truncated JSON answer must not look like a short one).
func LimitBody(rc io.ReadCloser, n int64) io.ReadCloser { return &limited{rc: rc, left: n} }

type limited struct {
	rc   io.ReadCloser
	left int64
}

func (l *limited) Read(p []byte) (int, error) {
	if l.left < 0 {
		return 0, ErrTooLarge
	}
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.rc.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		return n + int(l.left), ErrTooLarge
	}
	return n, err
}

func (l *limited) Close() error { return l.rc.Close() }

// ReadBody reads at most n bytes of r; more is ErrTooLarge.
func ReadBody(r io.Reader, n int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, n+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > n {
		return nil, ErrTooLarge
	}
	return b, nil
}
