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
	// DeleteExpiredSSO removes attempts, login tokens and UIA sessions
	// expired before now.
	DeleteExpiredSSO(ctx context.Context, now int64) error

	// User-interactive authentication sessions offering m.login.sso
	// (migration 0036), shared by a cluster's processes.

	// AddUIASSOSession records a session of userID for purpose; a session
	// already recorded is left as it is.
	AddUIASSOSession(ctx context.Context, id, userID, purpose string, expiresTS int64) error
	// UIASSOSession returns the user and purpose of a session; ErrNotFound
	// if there is none or it expired before now.
	UIASSOSession(ctx context.Context, id string, now int64) (userID, purpose string, err error)
	// CompleteUIASSO marks the session of userID completed; ErrNotFound if
	// there is no such live session of that user.
	CompleteUIASSO(ctx context.Context, id, userID string, now int64) error
	// TakeUIASSO removes the session if it is userID's for purpose, live
	// and completed, and reports whether it did (one taker wins).
	TakeUIASSO(ctx context.Context, id, userID, purpose string, now int64) (bool, error)
}
