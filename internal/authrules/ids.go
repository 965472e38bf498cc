package authrules

import (
	"strings"
	"unicode/utf8"
)

// validUserID applies the user ID validation the auth rules refer to
// ("valid user IDs" in the m.room.power_levels rule, the sender validation in
// v12's additional_creators rule). Because rooms carry events from users with
// historical IDs (Appendices, "Historical User IDs"), the localpart accepted
// is the historical one: any non-surrogate code points except ':' and NUL,
// possibly empty. The whole ID must not exceed 255 bytes and the domain must
// be a server name.
func validUserID(s string) bool {
	if len(s) > 255 || len(s) < 3 || s[0] != '@' {
		return false
	}
	i := strings.IndexByte(s, ':')
	if i < 0 {
		return false
	}
	local := s[1:i]
	if strings.IndexByte(local, 0) >= 0 || !utf8.ValidString(local) {
		return false
	}
	return validServerName(s[i+1:])
}

// validServerName follows the grammar in Appendices, "Server Name":
// hostname [ ":" port ], where hostname is an IPv4 literal, a bracketed IPv6
// literal or a DNS name (IPv4 literals are a subset of DNS-name characters).
func validServerName(s string) bool {
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return false
		}
		ip := s[1:end]
		if len(ip) < 2 || len(ip) > 45 {
			return false
		}
		for i := 0; i < len(ip); i++ {
			c := ip[i]
			if !(isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' || c == '.') {
				return false
			}
		}
		rest := s[end+1:]
		if rest != "" {
			if rest[0] != ':' {
				return false
			}
			port = rest[1:]
			if !validPort(port) {
				return false
			}
		}
		return true
	}
	if i := strings.IndexByte(s, ':'); i >= 0 {
		host, port = s[:i], s[i+1:]
		if !validPort(port) {
			return false
		}
	}
	if len(host) < 1 || len(host) > 255 {
		return false
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !(isDigit(c) || (c|0x20 >= 'a' && c|0x20 <= 'z') || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func validPort(p string) bool {
	if len(p) < 1 || len(p) > 5 {
		return false
	}
	for i := 0; i < len(p); i++ {
		if !isDigit(p[i]) {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// domainOf returns the server name of a user ID, a v1–v11 room ID or a
// v1–v2 event ID: everything after the first ':' (localparts cannot contain
// ':'). It returns "" when there is no ':'.
func domainOf(id string) string {
	if i := strings.IndexByte(id, ':'); i >= 0 {
		return id[i+1:]
	}
	return ""
}
