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
	"sync/atomic"
	"time"

	"conclave/internal/config"
	"conclave/internal/matrix"
	"conclave/internal/store"
)

// Service is the accounts service.
type Service struct {
	store      store.Accounts
	serverName string
	now        func() time.Time
	opts       Options
	hash       *hasher
	uia        uiaSessions
	nonces     nonces
	sessions   sessionCache // see sessioncache.go; off unless CacheSessions
	seen       seenRecorder // see seen.go

	// DeviceChange, when set, is called before a write that adds, removes
	// or renames a user's devices: their device list changes, and everyone
	// sharing a room with them must learn it (device_lists.changed in
	// /sync). It marks the change in the change tracker; the function it
	// returns, called after the write, records it and, with wake, wakes
	// those users.
	DeviceChange func(ctx context.Context, users ...string) (context.Context, func(wake bool))
	// OnDeactivate, when set, runs after an account is deactivated (the room
	// service makes the user leave their rooms). Set it before serving.
	OnDeactivate func(ctx context.Context, userID string)
	// Expiry, when set, refuses the requests of expired accounts once their
	// token is resolved (internal/validity): Authenticate returns its
	// error; AuthenticateAllowExpired does not ask it (renewal).
	Expiry func(ctx context.Context, sess *store.Session) error
	// UIASessionKey, when set, makes UIA session IDs carry an HMAC under
	// this key, and an unknown session ID with a valid HMAC starts a fresh
	// session under that ID instead of failing. Set when several processes
	// share the database (every process has the same key): sessions live
	// in one process's memory, and a client's next request may reach
	// another process (stages done so far are asked again; the usual
	// one-stage flows complete). IDs nobody issued still fail.
	UIASessionKey []byte
	// SSOSessions, when set (single sign-on on), keeps the sessions that
	// offer m.login.sso in the database: the stage is completed by the
	// provider's callback in whichever process it reaches, and taken by
	// the client's repeated request in whichever process that reaches.
	SSOSessions SSOSessionStore
	ssoSweep    atomic.Int64 // ms of the last removal of expired rows
	// CheckEmail, when set, checks the threepid_creds of an
	// m.login.email.identity stage for an operation (UIA.Purpose) and
	// returns the address they prove (internal/threepid). EmailOwner
	// returns the user an address is bound to ("" if none): an
	// authenticated operation (password change by e-mail) needs the
	// caller's own address.
	CheckEmail func(ctx context.Context, purpose string, creds ThreepidCreds) (string, error)
	EmailOwner func(ctx context.Context, email string) (string, error)
}

// Options configure the service; the zero value is closed registration,
// production hash parameters and non-expiring tokens.
type Options struct {
	OpenRegistration bool // m.login.dummy registration
	// EmailRegistration: registration needs a verified e-mail address
	// (email_domains): m.login.email.identity ends every flow.
	EmailRegistration  bool
	RegistrationTokens []string // m.login.registration_token values
	SharedSecret       string   // Synapse-compatible admin registration; "" disables
	// AccessTokenLifetime applies to access tokens issued with a refresh
	// token; others never expire.
	AccessTokenLifetime time.Duration
	HashParams          HashParams // zero: DefaultHashParams
	// PasswordPolicy is what users' new passwords must satisfy (policy.go).
	PasswordPolicy PasswordPolicy
}

// New returns the accounts service.
func New(st store.Accounts, serverName string, opts ...Options) *Service {
	s := &Service{store: st, serverName: serverName, now: time.Now}
	if len(opts) > 0 {
		s.opts = opts[0]
	}
	if s.opts.AccessTokenLifetime <= 0 {
		s.opts.AccessTokenLifetime = 5 * time.Minute
	}
	s.hash = newHasher(s.opts.HashParams)
	s.uia.m = map[string]*uiaSession{}
	s.nonces.m = map[string]time.Time{}
	return s
}

// SetClock replaces the time source (tests).
func (s *Service) SetClock(now func() time.Time) { s.now = now }

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
	sess, err := s.AuthenticateAllowExpired(ctx, token)
	if err != nil || s.Expiry == nil {
		return sess, err
	}
	if err := s.Expiry(ctx, sess); err != nil {
		return nil, err
	}
	return sess, nil
}

// AuthenticateAllowExpired is Authenticate for the requests an expired
// account may still make (asking for a renewal mail).
func (s *Service) AuthenticateAllowExpired(ctx context.Context, token string) (*store.Session, error) {
	if token == "" {
		return nil, matrix.Errorf(http.StatusUnauthorized, matrix.ErrMissingToken, "Missing access token")
	}
	h := sha256.Sum256([]byte(token))
	cached, ok, ticket := s.sessions.get(h)
	if ok {
		if cached.ExpiresTS != 0 && s.now().UnixMilli() >= cached.ExpiresTS {
			return nil, unknownToken(true)
		}
		return &cached, nil
	}
	sess, err := s.store.SessionByToken(ctx, h[:])
	if errors.Is(err, store.ErrNotFound) {
		return nil, unknownToken(false)
	}
	if err != nil {
		return nil, err
	}
	if sess.ExpiresTS != 0 && s.now().UnixMilli() >= sess.ExpiresTS {
		return nil, unknownToken(true)
	}
	if !sess.RefreshPending {
		s.sessions.put(h, *sess, ticket)
	}
	if sess.RefreshPending {
		// First use of a refreshed pair: the refresh token it replaced is
		// revoked now (POST /refresh).
		if err := s.store.ConfirmRefresh(ctx, HashToken(token)); err != nil {
			return nil, err
		}
	}
	return sess, nil
}

func unknownToken(soft bool) error {
	return matrix.Errorf(http.StatusUnauthorized, matrix.ErrUnknownToken, "Unknown or expired access token").With("soft_logout", soft)
}

// OptionsFrom derives the service options from the configuration.
func OptionsFrom(cfg *config.Config) Options {
	p := DefaultHashParams
	p.MemoryKiB = uint32(cfg.PasswordHashMemoryKiB)
	return Options{
		OpenRegistration:    cfg.EnableRegistration,
		EmailRegistration:   cfg.EmailDomains != "",
		RegistrationTokens:  ParseTokens(cfg.RegistrationTokens),
		SharedSecret:        cfg.RegistrationSharedSecret,
		AccessTokenLifetime: cfg.AccessTokenLifetime.Duration,
		HashParams:          p,
		PasswordPolicy: PasswordPolicy{MinLength: cfg.PasswordMinLength, RequireDigit: cfg.PasswordRequireDigit,
			RequireSymbol: cfg.PasswordRequireSymbol, RequireLowercase: cfg.PasswordRequireLowercase, RequireUppercase: cfg.PasswordRequireUppercase},
	}
}

// devicesChange begins a change of userID's devices (DeviceChange): write
// with the context it returns (it carries the marks to other processes),
// and call the function after the write, with its error.
func (s *Service) devicesChange(ctx context.Context, userID string) (context.Context, func(err error)) {
	if s.DeviceChange == nil {
		return ctx, func(error) {}
	}
	wctx, done := s.DeviceChange(ctx, userID)
	return wctx, func(err error) { done(err == nil) }
}
