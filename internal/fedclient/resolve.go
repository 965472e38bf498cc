package fedclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"conclave/internal/lru"
	"conclave/internal/matrix"
	"conclave/internal/outbound"
)

// Resolver is the DNS the client needs; *net.Resolver satisfies it. Tests
// feed SRV and address answers through it without DNS.
type Resolver interface {
	outbound.HostResolver
	LookupSRV(ctx context.Context, service, proto, name string) (cname string, addrs []*net.SRV, err error)
}

// Target is where a server name's federation API is (spec §Resolving server
// names): the addresses to connect to, in order, the Host header to send and
// the name the TLS certificate must be valid for (sent as SNI unless it is
// an IP address).
type Target struct {
	Addrs   []string // "host:port", host a name or an IP literal
	Host    string
	TLSName string
}

// Well-known cache periods (spec §Resolving server names, step 3: default
// 24 h, at most 48 h; errors cached up to an hour with exponential
// back-off). A response that arrived but is not a usable delegation
// (404, bad JSON, no m.server) is cached for the hour at once, as Synapse
// does; a failure to get any answer (DNS, connection, TLS, 5xx) starts at
// two minutes and doubles.
const (
	wellKnownDefault    = 24 * time.Hour
	wellKnownMax        = 48 * time.Hour
	wellKnownInvalid    = time.Hour
	wellKnownFirstRetry = 2 * time.Minute
	wellKnownMaxBody    = 64 << 10
	wellKnownTimeout    = 15 * time.Second
	wellKnownCacheSize  = 20_000
)

type wellKnownEntry struct {
	delegated string // "" when there is no usable delegation
	expires   time.Time
	failures  int // consecutive failures to get an answer
}

// wellKnown caches /.well-known/matrix/server answers per host name, and
// lets one fetch per host run at a time.
type wellKnown struct {
	cache    *lru.Cache[string, wellKnownEntry]
	mu       sync.Mutex
	inflight map[string]*wkCall
	// joined, when set (tests), is called when a lookup waits for a fetch
	// already in flight instead of starting its own.
	joined func()
}

type wkCall struct {
	done      chan struct{}
	delegated string
}

func newWellKnown() *wellKnown {
	return &wellKnown{cache: lru.New[string, wellKnownEntry](wellKnownCacheSize), inflight: map[string]*wkCall{}}
}

// splitServerName splits "host[:port]" (host possibly "[v6]"); port is 0
// when absent. The host of an IPv6 literal is returned without brackets.
func splitServerName(s string) (host string, port int, err error) {
	if !matrix.ValidServerName(s) {
		return "", 0, fmt.Errorf("%q is not a valid server name", s)
	}
	rest := ""
	if s[0] == '[' {
		end := strings.IndexByte(s, ']')
		host, rest = s[1:end], s[end+1:]
	} else if i := strings.LastIndexByte(s, ':'); i >= 0 {
		host, rest = s[:i], s[i:]
	} else {
		host = s
	}
	if rest != "" {
		port, _ = strconv.Atoi(rest[1:]) // ValidServerName checked it
		if port == 0 {
			return "", 0, fmt.Errorf("%q has port 0", s)
		}
	}
	return host, port, nil
}

func isIP(host string) bool {
	_, err := netip.ParseAddr(host)
	return err == nil
}

func hostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }

// Resolve finds where serverName's federation API is, per spec §Resolving
// server names. It does not check the allow list: callers check the name
// first (Do does).
func (c *Client) Resolve(ctx context.Context, serverName string) (Target, error) {
	host, port, err := splitServerName(serverName)
	if err != nil {
		return Target{}, err
	}
	// 1. An IP literal: that address, the given port or 8448; the
	//    certificate must be valid for the IP; Host is the server name.
	if isIP(host) {
		if port == 0 {
			port = c.defaultPort
		}
		return Target{Addrs: []string{hostPort(host, port)}, Host: serverName, TLSName: host}, nil
	}
	host = strings.ToLower(host)
	// 2. A host name with an explicit port: its A/AAAA records (the dialer
	//    resolves them), Host is the server name with the port.
	if port != 0 {
		return Target{Addrs: []string{hostPort(host, port)}, Host: serverName, TLSName: host}, nil
	}
	// 3. /.well-known/matrix/server delegates to <delegated>[:<port>].
	if d := c.wellKnownFor(ctx, host); d != "" {
		dhost, dport, err := splitServerName(d)
		if err != nil { // checked when fetched; be safe
			return Target{}, err
		}
		switch {
		case isIP(dhost): // 3.1: Host is the IP, with the port if given
			if dport == 0 {
				return Target{Addrs: []string{hostPort(dhost, c.defaultPort)}, Host: d, TLSName: dhost}, nil
			}
			return Target{Addrs: []string{hostPort(dhost, dport)}, Host: d, TLSName: dhost}, nil
		case dport != 0: // 3.2: Host is delegated_hostname:port
			dhost = strings.ToLower(dhost)
			return Target{Addrs: []string{hostPort(dhost, dport)}, Host: hostPort(dhost, dport), TLSName: dhost}, nil
		default: // 3.3–3.5: SRV of the delegated name, then 8448
			dhost = strings.ToLower(dhost)
			return Target{Addrs: c.srvOr8448(ctx, dhost), Host: dhost, TLSName: dhost}, nil
		}
	}
	// 4–6. No usable delegation: SRV _matrix-fed._tcp, then the deprecated
	//      _matrix._tcp, then A/AAAA on 8448; Host and certificate are the
	//      server's own host name.
	return Target{Addrs: c.srvOr8448(ctx, host), Host: host, TLSName: host}, nil
}

// srvOr8448 returns the targets of _matrix-fed._tcp.<host>, else of
// _matrix._tcp.<host>, else host:8448. SRV answers come sorted by priority
// and shuffled by weight (net.Resolver does RFC 2782's ordering); a single
// "." target means the service is not offered there.
func (c *Client) srvOr8448(ctx context.Context, host string) []string {
	for _, service := range []string{"matrix-fed", "matrix"} {
		_, srvs, err := c.resolver.LookupSRV(ctx, service, "tcp", host)
		if err != nil {
			continue
		}
		var out []string
		for _, s := range srvs {
			target := strings.TrimSuffix(s.Target, ".")
			if target == "" || s.Port == 0 {
				continue
			}
			out = append(out, hostPort(strings.ToLower(target), int(s.Port)))
		}
		if len(out) > 0 {
			return out
		}
	}
	return []string{hostPort(host, c.defaultPort)}
}

// wellKnownFor returns host's delegated server name from
// /.well-known/matrix/server ("" when there is none), from the cache when
// it holds a live answer.
func (c *Client) wellKnownFor(ctx context.Context, host string) string {
	wk := c.wk
	now := c.now()
	if e, ok := wk.cache.Get(host); ok && now.Before(e.expires) {
		return e.delegated
	}
	wk.mu.Lock()
	if call, ok := wk.inflight[host]; ok {
		wk.mu.Unlock()
		if wk.joined != nil {
			wk.joined()
		}
		select {
		case <-call.done:
			return call.delegated
		case <-ctx.Done():
			return ""
		}
	}
	call := &wkCall{done: make(chan struct{})}
	wk.inflight[host] = call
	wk.mu.Unlock()
	defer func() {
		wk.mu.Lock()
		delete(wk.inflight, host)
		wk.mu.Unlock()
		close(call.done)
	}()

	// The fetch runs on its own deadline, not the caller's: its answer is
	// cached for everyone.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), wellKnownTimeout)
	defer cancel()
	delegated, period, fetchErr := c.fetchWellKnown(fctx, host)
	var result wellKnownEntry
	wk.cache.Update(host, func(old wellKnownEntry, had bool) (wellKnownEntry, bool) {
		result = wellKnownEntry{delegated: delegated, expires: now.Add(period)}
		if fetchErr != nil {
			result.failures = 1
			if had {
				result.failures = old.failures + 1
			}
			backoff := wellKnownFirstRetry << min(result.failures-1, 10)
			result.expires = now.Add(min(backoff, wellKnownInvalid))
			// A server that delegated before keeps its delegation while
			// its well-known cannot be reached, rather than being looked
			// for where it said it is not.
			if had && old.delegated != "" {
				result.delegated = old.delegated
			}
		}
		return result, true
	})
	call.delegated = result.delegated
	return result.delegated
}

// errNoAnswer marks a well-known failure to get any answer (back-off),
// as opposed to an answer that is not a delegation (cached an hour).
var errNoAnswer = errors.New("no answer")

// fetchWellKnown gets https://<host>/.well-known/matrix/server, following
// redirects (https only, at most 5, no loops). It returns the delegated
// name ("" for none) and how long to cache the answer, or errNoAnswer
// (wrapped) when no answer came.
func (c *Client) fetchWellKnown(ctx context.Context, host string) (string, time.Duration, error) {
	u := "https://" + host
	if c.wellKnownPort != 443 {
		u = "https://" + hostPort(host, c.wellKnownPort)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u+"/.well-known/matrix/server", nil)
	if err != nil {
		return "", wellKnownInvalid, nil
	}
	client := c.out.Redirecting(5, func(next *http.Request) error {
		if next.URL.Scheme != "https" {
			return errors.New("well-known redirect to a non-https URL")
		}
		return nil
	})
	res, err := client.Do(req)
	if err != nil {
		return "", 0, fmt.Errorf("%w: %v", errNoAnswer, err)
	}
	defer res.Body.Close()
	if res.StatusCode >= 500 {
		return "", 0, fmt.Errorf("%w: status %d", errNoAnswer, res.StatusCode)
	}
	if res.StatusCode != http.StatusOK {
		return "", wellKnownInvalid, nil
	}
	body, err := outbound.ReadBody(res.Body, wellKnownMaxBody)
	if err != nil {
		if errors.Is(err, outbound.ErrTooLarge) {
			return "", wellKnownInvalid, nil
		}
		return "", 0, fmt.Errorf("%w: %v", errNoAnswer, err)
	}
	var wk struct {
		Server *string `json:"m.server"`
	}
	if json.Unmarshal(body, &wk) != nil || wk.Server == nil || !matrix.ValidServerName(*wk.Server) {
		return "", wellKnownInvalid, nil
	}
	return *wk.Server, cachePeriod(res.Header.Values("Cache-Control")), nil
}

// cachePeriod reads max-age from Cache-Control (no-store: not cached;
// none: 24 h; at most 48 h).
func cachePeriod(values []string) time.Duration {
	for _, v := range values {
		for _, d := range strings.Split(v, ",") {
			d = strings.ToLower(strings.TrimSpace(d))
			if d == "no-store" || d == "no-cache" {
				return 0
			}
			if s, ok := strings.CutPrefix(d, "max-age="); ok {
				n, err := strconv.ParseInt(strings.Trim(s, `"`), 10, 64)
				if err != nil || n < 0 {
					continue
				}
				if time.Duration(n) > wellKnownMax/time.Second {
					return wellKnownMax
				}
				return time.Duration(n) * time.Second
			}
		}
	}
	return wellKnownDefault
}
