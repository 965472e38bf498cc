// Package accounts owns users, devices, passwords and tokens: registration,
// login, logout, refresh, password changes, deactivation and the
// authentication of every request's access token.
package accounts

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"time"

	"conclave/internal/matrix"
	"conclave/internal/store"
)

// Service is the accounts service.
type Service struct {
	store      store.Accounts
	serverName string
	now        func() time.Time
}

// New returns the accounts service.
func New(st store.Accounts, serverName string) *Service {
	return &Service{store: st, serverName: serverName, now: time.Now}
}

// ServerName is the server's Matrix name.
func (s *Service) ServerName() string { return s.serverName }

// HashToken is how tokens are stored: SHA-256 of the token. Tokens carry 256
// bits of randomness, so a fast hash is enough; the plain token is never kept.
func HashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// NewToken returns a fresh random token with a readable prefix ("syt_",
// "syr_" like Synapse, so secret scanners recognise them).
func NewToken(prefix string) string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// Authenticate resolves an access token. Unknown or expired tokens give
// M_UNKNOWN_TOKEN; an expired one says soft_logout, as the spec asks, so the
// client refreshes instead of wiping its keys.
func (s *Service) Authenticate(ctx context.Context, token string) (*store.Session, error) {
	if token == "" {
		return nil, matrix.Errorf(http.StatusUnauthorized, matrix.ErrMissingToken, "Missing access token")
	}
	sess, err := s.store.SessionByToken(ctx, HashToken(token))
	if errors.Is(err, store.ErrNotFound) {
		return nil, unknownToken(false)
	}
	if err != nil {
		return nil, err
	}
	if sess.ExpiresTS != 0 && s.now().UnixMilli() >= sess.ExpiresTS {
		return nil, unknownToken(true)
	}
	return sess, nil
}

func unknownToken(soft bool) error {
	return matrix.Errorf(http.StatusUnauthorized, matrix.ErrUnknownToken, "Unknown or expired access token").With("soft_logout", soft)
}
