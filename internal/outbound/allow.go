package outbound

import (
	"errors"
	"strings"

	"conclave/internal/matrix"
)

// ErrNotAllowed is what every refusal by an AllowList matches (errors.Is).
var ErrNotAllowed = errors.New("server is not in federation_allow")

// NotAllowedError names the server an AllowList refused.
type NotAllowedError struct{ Server string }

func (e *NotAllowedError) Error() string {
	return "federation with " + e.Server + " is not allowed: not in federation_allow"
}

// Is makes errors.Is(err, ErrNotAllowed) true.
func (e *NotAllowedError) Is(target error) bool { return target == ErrNotAllowed }

// MatrixError is the answer to a request from a server outside the circle:
// 403 M_FORBIDDEN (the closed-circle contract, docs/federation.md).
func (e *NotAllowedError) MatrixError() *matrix.Error {
	return matrix.Forbidden("Federation with %s is not allowed on this server", e.Server)
}

// AllowList is the closed circle (federation_allow): when it names servers,
// only they may send to us or be contacted by us. A nil or empty list is
// open federation. Names are server names with their port, if any
// ("localhost:8449" and "localhost" are different servers); host names are
// compared case-insensitively, as DNS does.
type AllowList struct {
	names map[string]struct{}
}

// NewAllowList builds the list; empty entries are ignored. The names are
// expected to be validated already (config.Validate).
func NewAllowList(names []string) *AllowList {
	a := &AllowList{names: map[string]struct{}{}}
	for _, n := range names {
		if n = strings.TrimSpace(n); n != "" {
			a.names[strings.ToLower(n)] = struct{}{}
		}
	}
	return a
}

// Open reports whether every server is allowed (no list).
func (a *AllowList) Open() bool { return a == nil || len(a.names) == 0 }

// Allowed reports whether server may be contacted or may contact us.
func (a *AllowList) Allowed(server string) bool {
	if a.Open() {
		return true
	}
	_, ok := a.names[strings.ToLower(server)]
	return ok
}

// Check returns a *NotAllowedError unless server is allowed.
func (a *AllowList) Check(server string) error {
	if a.Allowed(server) {
		return nil
	}
	return &NotAllowedError{Server: server}
}
