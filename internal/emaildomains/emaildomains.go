// Package emaildomains owns the circle's map of e-mail domains to the
// servers that host their people (`--email-domains FILE`). Every server of a
// circle loads the same file, so each can tell, for any work address, which
// server its account lives on, whether it is an external's, and whether the
// address is for this server at all (registration, /info, the identity
// lookup, 3pid invites).
//
// # File format
//
// UTF-8 text, one rule per line; blank lines and lines starting with # are
// ignored; a rule is a pattern and a server name separated by spaces or tabs:
//
//		# pattern            server
//		finances.gouv.fr     agent.finances.gouv.fr
//		*.finances.gouv.fr   agent.finances.gouv.fr
//		interieur.gouv.fr    agent.interieur.gouv.fr
//		*.gouv.fr            agent.dinum.gouv.fr
//		*                    agent.externe.gouv.fr
//
//	  - `example.org` matches that domain exactly;
//	  - `*.example.org` matches every domain under it (a.example.org,
//	    b.a.example.org) but not example.org itself;
//	  - `*` alone is the catch-all: the server of externals. At most one; an
//	    address no other rule matches belongs there. Every address mapped to
//	    that server (by the catch-all or by a rule naming it) is an external's.
//	    Without a catch-all, addresses no rule matches are refused.
//
// An exact rule wins over a suffix rule, and a longer suffix over a shorter
// one, whatever their order in the file; the same pattern twice is an error.
// Domains are compared in lower case. Server names are Matrix server names
// (host[:port]).
package emaildomains

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"os"
	"sort"
	"strings"

	"conclave/internal/matrix"
)

// MaxFileBytes bounds the file read; MaxRules the rules kept. A circle of
// ministries has dozens of domains, not millions.
const (
	MaxFileBytes = 4 << 20
	MaxRules     = 100_000
)

// Map is a loaded domain map. It is immutable and safe for concurrent use.
type Map struct {
	exact    map[string]string // domain → server
	suffixes map[string]string // "example.org" (from *.example.org) → server
	external string            // the catch-all's server; "" when none
	servers  []string          // every server named, sorted, once each
}

// Load reads the map from path.
func Load(path string) (*Map, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("email_domains: %w", err)
	}
	defer f.Close()
	m, err := Parse(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("email_domains: %s: %w", path, err)
	}
	return m, nil
}

// Parse reads a map in the file format above. An error names the line.
func Parse(r io.Reader) (*Map, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("larger than %d bytes", MaxFileBytes)
	}
	m := &Map{exact: map[string]string{}, suffixes: map[string]string{}}
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), MaxFileBytes)
	rules, line := 0, 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if line == 1 {
			text = strings.TrimPrefix(text, "\ufeff")
		}
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) != 2 {
			return nil, fmt.Errorf("line %d: want a pattern and a server name, got %d fields", line, len(fields))
		}
		pattern, server := strings.ToLower(fields[0]), fields[1]
		if !matrix.ValidServerName(server) {
			return nil, fmt.Errorf("line %d: %q is not a valid server name (host[:port])", line, server)
		}
		if seen[pattern] {
			return nil, fmt.Errorf("line %d: pattern %q appears twice", line, pattern)
		}
		seen[pattern] = true
		if rules++; rules > MaxRules {
			return nil, fmt.Errorf("line %d: more than %d rules", line, MaxRules)
		}
		switch {
		case pattern == "*":
			m.external = server
		case strings.HasPrefix(pattern, "*."):
			d := pattern[2:]
			if !validDomain(d) {
				return nil, fmt.Errorf("line %d: %q is not *. followed by a domain", line, pattern)
			}
			m.suffixes[d] = server
		default:
			if !validDomain(pattern) {
				return nil, fmt.Errorf("line %d: %q is not a domain, *.domain or *", line, pattern)
			}
			m.exact[pattern] = server
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if rules == 0 {
		return nil, errors.New("no rules")
	}
	set := map[string]bool{}
	for _, s := range m.exact {
		set[s] = true
	}
	for _, s := range m.suffixes {
		set[s] = true
	}
	if m.external != "" {
		set[m.external] = true
	}
	for s := range set {
		m.servers = append(m.servers, s)
	}
	sort.Strings(m.servers)
	return m, nil
}

// validDomain accepts what an e-mail address's domain may be here: labels
// of letters, digits and hyphens (IDNs in their xn-- form), dot-separated.
func validDomain(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// Lookup tells which server hosts the account of the address email, and
// whether that is the externals' server. ok is false when the address is
// not a plain address (see Canonical) or no rule matches it.
func (m *Map) Lookup(email string) (server string, external bool, ok bool) {
	addr, err := Canonical(email)
	if err != nil {
		return "", false, false
	}
	return m.LookupDomain(addr[strings.LastIndexByte(addr, '@')+1:])
}

// LookupDomain is Lookup for a domain in lower case.
func (m *Map) LookupDomain(domain string) (server string, external bool, ok bool) {
	if m == nil {
		return "", false, false
	}
	if s, found := m.exact[domain]; found {
		return s, s == m.external, true
	}
	// The longest matching suffix: strip one label at a time.
	for d := domain; ; {
		i := strings.IndexByte(d, '.')
		if i < 0 {
			break
		}
		d = d[i+1:]
		if s, found := m.suffixes[d]; found {
			return s, s == m.external, true
		}
	}
	if m.external != "" {
		return m.external, true, true
	}
	return "", false, false
}

// ExternalServer is the catch-all's server ("" when the map has none).
func (m *Map) ExternalServer() string {
	if m == nil {
		return ""
	}
	return m.external
}

// Servers lists every server the map names, sorted.
func (m *Map) Servers() []string {
	if m == nil {
		return nil
	}
	return append([]string(nil), m.servers...)
}

// Names reports whether server is one the map names.
func (m *Map) Names(server string) bool {
	if m == nil {
		return false
	}
	i := sort.SearchStrings(m.servers, server)
	return i < len(m.servers) && m.servers[i] == server
}

// ErrBadAddress is returned by Canonical for anything but a plain address.
var ErrBadAddress = errors.New("not a plain e-mail address (local@domain)")

// MaxAddressLength bounds an address (RFC 5321's path limit).
const MaxAddressLength = 254

// Canonical returns the address in the form it is stored and compared in:
// trimmed, local part case-folded and domain in lower case, as Synapse's
// canonicalise_email does. Only plain addresses are accepted — no display
// name, comment, angle brackets or quoted local part, the check Tchap makes
// on 3pid invites (parseaddr(address)[1] == address) — with a domain
// validDomain accepts.
func Canonical(email string) (string, error) {
	email = strings.TrimSpace(email)
	if email == "" || len(email) > MaxAddressLength {
		return "", ErrBadAddress
	}
	parsed, err := mail.ParseAddress(email)
	if err != nil || parsed.Address != email || parsed.Name != "" {
		return "", ErrBadAddress
	}
	at := strings.LastIndexByte(email, '@')
	local, domain := email[:at], strings.ToLower(email[at+1:])
	if local == "" || strings.ContainsAny(local, "\"\\ ") || !validDomain(domain) {
		return "", ErrBadAddress
	}
	return strings.ToLower(local) + "@" + domain, nil
}
