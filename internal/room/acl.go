package room

import (
	"context"
	"encoding/json"
	"net/netip"
	"strings"
)

// ServerAllowed reports whether the room's m.room.server_acl lets server
// take part (Client-Server API, "Server Access Control Lists": the port is
// ignored; an IP literal is denied unless allow_ip_literals; deny globs
// win; otherwise the server must match an allow glob). A room without an
// ACL, or one this server does not know, allows everyone.
func (s *Service) ServerAllowed(ctx context.Context, roomID, server string) bool {
	e, rs, err := s.lock(ctx, roomID)
	if err != nil {
		return true
	}
	ev := rs.StateEvent("m.room.server_acl", "")
	s.unlock(e)
	if ev == nil {
		return true
	}
	return ACLAllows(ev.Content, server)
}

// ACLAllows applies an m.room.server_acl content to a server name.
func ACLAllows(content json.RawMessage, server string) bool {
	var acl struct {
		Allow           []any `json:"allow"`
		Deny            []any `json:"deny"`
		AllowIPLiterals *bool `json:"allow_ip_literals"`
	}
	if json.Unmarshal(content, &acl) != nil {
		// Unreadable content restricts nothing (Synapse treats a malformed
		// ACL as absent).
		return true
	}
	host := hostOf(server)
	if acl.AllowIPLiterals != nil && !*acl.AllowIPLiterals {
		h := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		if _, err := netip.ParseAddr(h); err == nil {
			return false
		}
	}
	for _, d := range acl.Deny {
		if p, ok := d.(string); ok && globMatch(p, host) {
			return false
		}
	}
	for _, a := range acl.Allow {
		if p, ok := a.(string); ok && globMatch(p, host) {
			return true
		}
	}
	return false
}

// hostOf strips the port from a server name.
func hostOf(server string) string {
	if strings.HasPrefix(server, "[") {
		if i := strings.Index(server, "]"); i > 0 {
			return server[:i+1]
		}
		return server
	}
	if i := strings.LastIndexByte(server, ':'); i >= 0 {
		return server[:i]
	}
	return server
}

// globMatch matches s against a glob with * (any run) and ? (one
// character), case-insensitively as server names are.
func globMatch(pattern, s string) bool {
	p, str := strings.ToLower(pattern), strings.ToLower(s)
	// Iterative matching with one backtrack point: linear in practice, and
	// bounded by len(p)*len(s) in the worst case.
	pi, si, star, mark := 0, 0, -1, 0
	for si < len(str) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == str[si]):
			pi++
			si++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}
