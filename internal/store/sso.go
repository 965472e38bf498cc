package store

import "context"

// SSOAttempt is a single sign-on login begun at /login/sso/redirect and not
// yet come back from the identity provider (internal/sso, migration 0031).
// Only hashes of the state parameter and of the browser's cookie are kept:
// the callback must present both.
type SSOAttempt struct {
	StateHash   []byte // SHA-256 of the state parameter sent to the provider
	BrowserHash []byte // SHA-256 of the cookie set on the browser
	Nonce       string // the ID token's nonce
	Verifier    string // the PKCE code verifier
	IdP         string // identity provider ID
	RedirectURL string // the client's redirectUrl
	ExpiresTS   int64  // ms
	// UIASession and UserID: an attempt begun at the m.login.sso fallback
	// page (migration 0036) completes that user-interactive
	// authentication session of that user; "" for a login.
	UIASession, UserID string
}

// SSO keeps single sign-on attempts and login tokens (m.login.token),
// migration 0031. Both are taken once: a second take finds nothing.
type SSO interface {
	// AddSSOAttempt stores a new attempt.
	AddSSOAttempt(ctx context.Context, a *SSOAttempt) error
	// TakeSSOAttempt removes and returns the attempt of a state hash;
	// ErrNotFound if there is none or it expired before now.
	TakeSSOAttempt(ctx context.Context, stateHash []byte, now int64) (*SSOAttempt, error)
	// AddLoginToken stores a login token's hash for userID.
	AddLoginToken(ctx context.Context, tokenHash []byte, userID string, expiresTS int64) error
	// TakeLoginToken removes a login token and returns its user;
	// ErrNotFound if there is none or it expired before now.
	TakeLoginToken(ctx context.Context, tokenHash []byte, now int64) (string, error)
	// DeleteExpiredSSO removes attempts and login tokens expired before now.
	DeleteExpiredSSO(ctx context.Context, now int64) error
}
