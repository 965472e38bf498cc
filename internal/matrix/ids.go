package matrix

import (
	"strings"
)

// Identifier grammar, Matrix spec Appendices, "Identifier Grammar".

// MaxIDLength is the limit on user IDs, room IDs, aliases and event IDs.
const MaxIDLength = 255

// SplitID splits "<sigil>localpart:server" into its parts. It checks only the
// shape, not the character sets.
func SplitID(sigil byte, id string) (local, server string, ok bool) {
	if len(id) < 3 || len(id) > MaxIDLength || id[0] != sigil {
		return "", "", false
	}
	i := strings.IndexByte(id, ':')
	if i < 1 {
		return "", "", false
	}
	return id[1:i], id[i+1:], ValidServerName(id[i+1:])
}

// ValidUserID reports whether id is a syntactically valid user ID. Historical
// user IDs (any printable ASCII but ':') are accepted, as the spec requires
// servers to tolerate them from other servers.
func ValidUserID(id string) bool {
	local, _, ok := SplitID('@', id)
	if !ok || local == "" {
		return false
	}
	for i := 0; i < len(local); i++ {
		c := local[i]
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// ValidLocalpart reports whether s is acceptable as the localpart of a new
// user ID registered here: lower-case a-z, digits, and ._=-/+ .
func ValidLocalpart(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '.', c == '_', c == '=', c == '-', c == '/', c == '+':
		default:
			return false
		}
	}
	return true
}

// UserID builds "@local:server".
func UserID(local, server string) string { return "@" + local + ":" + server }

// ServerOf returns the server name part of an ID, or "".
func ServerOf(id string) string {
	if i := strings.IndexByte(id, ':'); i >= 0 {
		return id[i+1:]
	}
	return ""
}

// ValidRoomID reports whether id looks like a room ID. Room version 12 room
// IDs carry no server part ("!" + hash), so both shapes are accepted.
func ValidRoomID(id string) bool {
	if len(id) < 2 || len(id) > MaxIDLength || id[0] != '!' {
		return false
	}
	if i := strings.IndexByte(id, ':'); i >= 0 {
		return i > 1 && ValidServerName(id[i+1:])
	}
	for i := 1; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// ValidAlias reports whether a is a room alias "#local:server".
func ValidAlias(a string) bool {
	local, _, ok := SplitID('#', a)
	return ok && local != "" && !strings.ContainsAny(local, "\x00")
}

// ValidEventID reports whether id looks like an event ID ("$...").
func ValidEventID(id string) bool {
	return len(id) >= 2 && len(id) <= MaxIDLength && id[0] == '$'
}

// ValidServerName checks "host[:port]" where host is a DNS name, an IPv4
// address or a bracketed IPv6 literal.
func ValidServerName(s string) bool {
	if s == "" || len(s) > MaxIDLength {
		return false
	}
	host := s
	if s[0] == '[' {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return false
		}
		for _, c := range s[1:end] {
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == ':' || c == '.') {
				return false
			}
		}
		rest := s[end+1:]
		if rest == "" {
			return true
		}
		return rest[0] == ':' && validPort(rest[1:])
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		host = s[:i]
		if !validPort(s[i+1:]) {
			return false
		}
	}
	if host == "" {
		return false
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func validPort(p string) bool {
	if p == "" || len(p) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
		n = n*10 + int(p[i]-'0')
	}
	return n <= 65535
}
