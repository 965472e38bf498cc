// Package sso owns single sign-on through an OpenID Connect provider (the
// state's identity federation, ProConnect, is one): the authorization
// request (state, nonce and PKCE, bound to the browser by a cookie, kept in
// the store until the callback), the callback (code exchange, ID token
// verified with go-oidc, a verified e-mail claim required), the account the
// address gives (the one it is bound to, or a new one named from it as
// Tchap does; addresses that do not belong on this server refused), and the
// short-lived single-use login tokens (m.login.token) that hand the login to
// the client. Client-Server API, "Single Sign-On" and "Token-based login".
// It also proves a user again for user-interactive authentication
// (m.login.sso through the fallback page: BeginUIA, then Finish answers
// which session of which user the provider confirmed).
// HTTP (redirects, cookies, pages) is clientapi's.
package sso

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"conclave/internal/accounts"
	"conclave/internal/matrix"
	"conclave/internal/store"
	"conclave/internal/threepid"
)

// CallbackPath is where the provider sends the browser back (the redirect
// URI registered at the provider is public_base_url + CallbackPath; the
// path is Synapse's, so an operator's provider entry need not change).
const CallbackPath = "/_synapse/client/oidc/callback"

// Lifetimes: the browser has AttemptLifetime to sign in at the provider,
// the client LoginTokenLifetime to exchange the login token (Synapse: 2m).
const (
	AttemptLifetime    = 10 * time.Minute
	LoginTokenLifetime = 2 * time.Minute
	// MaxRedirectURL bounds the client's redirectUrl.
	MaxRedirectURL = 2048
	// maxProviderBody bounds every response read from the provider.
	maxProviderBody = 1 << 20
)

// IdPID is the identity provider's ID in /login flows and
// /login/sso/redirect/{idpId}. One provider per server.
const IdPID = "oidc"

// Directory answers, for an e-mail address, which server its account
// belongs on and which account has it (threepid.Service).
type Directory interface {
	// Home is the server the address belongs on and whether it is an
	// external's; an error (M_THREEPID_DENIED) when it belongs nowhere.
	Home(address string) (server string, external bool, err error)
	// LocalInfo is the local account bound to the address ("" if none)
	// and whether a member invited the address.
	LocalInfo(ctx context.Context, medium, address string) (userID string, invited bool, err error)
	// Registered binds the address to a new account.
	Registered(ctx context.Context, userID, address string) error
}

// Profiles sets a new account's display name (profile.Service).
type Profiles interface {
	SetDisplayName(ctx context.Context, requester, target, name string) error
}

// Config configures the provider.
type Config struct {
	Issuer, ClientID, ClientSecret string
	// BaseURL is public_base_url: the callback is BaseURL + CallbackPath.
	BaseURL string
	// IdPName is the provider's name shown by clients.
	IdPName string
	// ServerName is this server's.
	ServerName string
	// HTTP makes the requests to the provider (internal/outbound).
	HTTP *http.Client
	// TrustUnverifiedEmail accepts the provider's email claim without
	// email_verified: true (oidc_require_email_verified: false), for
	// providers that only give addresses they verified but do not say so.
	TrustUnverifiedEmail bool
}

// Service is single sign-on.
type Service struct {
	cfg       Config
	Store     store.SSO
	Accounts  *accounts.Service
	Directory Directory
	Profiles  Profiles // nil: new accounts keep no display name
	Log       *slog.Logger

	clock    atomic.Pointer[func() time.Time]
	mu       sync.Mutex
	provider *oidc.Provider // discovered on first use
}

// New returns the service.
func New(cfg Config) *Service {
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	if cfg.IdPName == "" {
		cfg.IdPName = "Single sign-on"
	}
	return &Service{cfg: cfg, Log: slog.Default()}
}

// SetClock replaces the time source (tests); safe while serving.
func (s *Service) SetClock(now func() time.Time) { s.clock.Store(&now) }

// Now is the service's time.
func (s *Service) Now() time.Time {
	if f := s.clock.Load(); f != nil {
		return (*f)()
	}
	return time.Now()
}

// IdP describes the provider for GET /login (Synapse's identity_providers).
func (s *Service) IdP() map[string]string {
	return map[string]string{"id": IdPID, "name": s.cfg.IdPName}
}

// limitedBody bounds what is read from the provider: go-oidc reads its
// discovery document and keys whole.
type limitedBody struct{ rt http.RoundTripper }

func (l limitedBody) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := l.rt.RoundTrip(r)
	if err == nil {
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.LimitReader(resp.Body, maxProviderBody), resp.Body}
	}
	return resp, err
}

func (s *Service) httpContext(ctx context.Context) context.Context {
	c := s.cfg.HTTP
	if c == nil {
		c = http.DefaultClient
	}
	rt := c.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	bounded := *c
	bounded.Transport = limitedBody{rt}
	return oidc.ClientContext(ctx, &bounded)
}

// discover returns the provider, fetching its discovery document the first
// time (and again after a failure: the provider may come up after us).
func (s *Service) discover(ctx context.Context) (*oidc.Provider, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.provider != nil {
		return s.provider, nil
	}
	p, err := oidc.NewProvider(s.httpContext(ctx), s.cfg.Issuer)
	if err != nil {
		// The provider is down or misconfigured: not this server's bug,
		// and nothing the client can fix; the operator reads the log.
		s.Log.Warn("sso: discovering the provider", "issuer", s.cfg.Issuer, "err", err)
		return nil, matrix.Errorf(http.StatusBadGateway, matrix.ErrUnknown, "The identity provider cannot be reached")
	}
	s.provider = p
	return p, nil
}

func (s *Service) oauth(p *oidc.Provider) *oauth2.Config {
	return &oauth2.Config{ClientID: s.cfg.ClientID, ClientSecret: s.cfg.ClientSecret, Endpoint: p.Endpoint(),
		RedirectURL: s.cfg.BaseURL + CallbackPath, Scopes: []string{oidc.ScopeOpenID, "email", "profile"}}
}

func hash(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// CheckRedirectURL validates a client's redirectUrl: an absolute URL of a
// scheme a client may handle (https, http, or an app's own), never one that
// runs code in the page (javascript:, data:, vbscript:).
func CheckRedirectURL(raw string) error {
	if raw == "" {
		return matrix.MissingParam("Missing redirectUrl")
	}
	u, err := url.Parse(raw)
	if len(raw) > MaxRedirectURL || err != nil || u.Scheme == "" || strings.ContainsAny(raw, "\x00\r\n<>\"'` ") {
		return matrix.InvalidParam("Invalid redirectUrl")
	}
	switch strings.ToLower(u.Scheme) {
	case "javascript", "data", "vbscript", "file", "blob":
		return matrix.InvalidParam("Invalid redirectUrl")
	case "http", "https":
		if u.Host == "" {
			return matrix.InvalidParam("Invalid redirectUrl")
		}
	}
	return nil
}

// Begin starts a login for the client at redirectURL: it returns the
// provider's authorization URL to send the browser to, and the value of the
// cookie that binds the attempt to that browser.
func (s *Service) Begin(ctx context.Context, idp, redirectURL string) (authURL, cookie string, err error) {
	if idp != "" && idp != IdPID {
		return "", "", matrix.Errorf(http.StatusNotFound, matrix.ErrNotFound, "Unknown identity provider")
	}
	if err := CheckRedirectURL(redirectURL); err != nil {
		return "", "", err
	}
	p, err := s.discover(ctx)
	if err != nil {
		return "", "", err
	}
	state, nonce, verifier := rand.Text(), rand.Text(), oauth2.GenerateVerifier()
	cookie = rand.Text()
	now := s.Now()
	a := &store.SSOAttempt{StateHash: hash(state), BrowserHash: hash(cookie), Nonce: nonce, Verifier: verifier, IdP: IdPID,
		RedirectURL: redirectURL, ExpiresTS: now.Add(AttemptLifetime).UnixMilli()}
	if err := s.Store.AddSSOAttempt(ctx, a); err != nil {
		return "", "", err
	}
	// Old attempts and tokens go now and then, here where they are made.
	if err := s.Store.DeleteExpiredSSO(ctx, now.UnixMilli()); err != nil {
		s.Log.Warn("sso: removing expired attempts", "err", err)
	}
	authURL = s.oauth(p).AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier))
	return authURL, cookie, nil
}

// BeginUIA starts a confirmation at the provider for user-interactive
// authentication session uiaSession of userID (the m.login.sso fallback
// page): as Begin, but the callback completes that session instead of
// logging in.
func (s *Service) BeginUIA(ctx context.Context, uiaSession, userID string) (authURL, cookie string, err error) {
	if uiaSession == "" || userID == "" {
		return "", "", matrix.MissingParam("Missing session")
	}
	p, err := s.discover(ctx)
	if err != nil {
		return "", "", err
	}
	state, nonce, verifier := rand.Text(), rand.Text(), oauth2.GenerateVerifier()
	cookie = rand.Text()
	now := s.Now()
	a := &store.SSOAttempt{StateHash: hash(state), BrowserHash: hash(cookie), Nonce: nonce, Verifier: verifier, IdP: IdPID,
		ExpiresTS: now.Add(AttemptLifetime).UnixMilli(), UIASession: uiaSession, UserID: userID}
	if err := s.Store.AddSSOAttempt(ctx, a); err != nil {
		return "", "", err
	}
	if err := s.Store.DeleteExpiredSSO(ctx, now.UnixMilli()); err != nil {
		s.Log.Warn("sso: removing expired attempts", "err", err)
	}
	// No prompt=login: as Synapse, a person still signed in at the
	// provider confirms with the page's click (not every provider honours
	// a forced sign-in, and one that refuses it would break the flow).
	authURL = s.oauth(p).AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier))
	return authURL, cookie, nil
}

// Result is a finished login, or a confirmation (UIASession set).
type Result struct {
	UserID      string
	Created     bool   // a new account was made
	RedirectURL string // the client's redirectUrl with loginToken added
	ClientURL   string // the client's redirectUrl as given
	// UIASession: the user-interactive authentication session UserID
	// confirmed (BeginUIA); nothing was logged in.
	UIASession string
}

// ErrOtherUser: the provider confirmed someone else than the user whose
// session BeginUIA began.
var ErrOtherUser = matrix.Forbidden("You signed in at the identity provider as someone else than the user who asked for this action: nothing was confirmed")

// Callback is what the provider sent the browser back with.
type Callback struct {
	State, Code    string
	Error, ErrDesc string // an authorization error from the provider
	Cookie         string // the browser's cookie ("" if none)
}

// ErrExpired: the attempt is unknown, used or expired, or the browser is
// not the one that began it.
var errAttempt = matrix.Errorf(http.StatusBadRequest, matrix.ErrForbidden, "This login attempt is unknown or has expired: start again from your client")

// Finish completes a login at the callback: the attempt is taken (once),
// checked against the browser's cookie, the code exchanged with the PKCE
// verifier, the ID token verified (issuer, audience, expiry, signature,
// nonce), the address must be verified and belong on this server; the
// account is found or made, and a login token issued.
func (s *Service) Finish(ctx context.Context, cb Callback) (*Result, error) {
	if cb.State == "" {
		return nil, matrix.MissingParam("Missing state")
	}
	a, err := s.Store.TakeSSOAttempt(ctx, hash(cb.State), s.Now().UnixMilli())
	if errors.Is(err, store.ErrNotFound) {
		return nil, errAttempt
	}
	if err != nil {
		return nil, err
	}
	// The attempt is gone whatever happens next: a state is good once.
	if cb.Cookie == "" || subtle.ConstantTimeCompare(hash(cb.Cookie), a.BrowserHash) != 1 {
		return nil, errAttempt
	}
	if cb.Error != "" {
		return nil, matrix.Forbidden("The identity provider refused the login: %s", oneLine(cb.Error+" "+cb.ErrDesc))
	}
	if cb.Code == "" {
		return nil, matrix.MissingParam("Missing code")
	}
	p, err := s.discover(ctx)
	if err != nil {
		return nil, err
	}
	hctx := s.httpContext(ctx)
	tok, err := s.oauth(p).Exchange(hctx, cb.Code, oauth2.VerifierOption(a.Verifier))
	if err != nil {
		s.Log.Info("sso: code exchange failed", "err", err)
		return nil, matrix.Forbidden("The identity provider did not confirm the login")
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, matrix.Forbidden("The identity provider sent no ID token")
	}
	idt, err := p.VerifierContext(hctx, &oidc.Config{ClientID: s.cfg.ClientID, Now: s.Now}).Verify(hctx, raw)
	if err != nil {
		s.Log.Info("sso: ID token refused", "err", err)
		return nil, matrix.Forbidden("The identity provider's ID token is not valid")
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(a.Nonce)) != 1 {
		return nil, matrix.Forbidden("The identity provider's ID token is not valid")
	}
	var claims struct {
		Email         string `json:"email"`
		EmailVerified any    `json:"email_verified"`
	}
	if err := idt.Claims(&claims); err != nil {
		return nil, matrix.Forbidden("The identity provider's ID token is not valid")
	}
	if claims.Email == "" {
		// Some providers put the claims at the userinfo endpoint only
		// (ProConnect signs that answer; go-oidc verifies it). Its sub
		// must be the ID token's (OpenID Connect Core 5.3.2).
		ui, err := p.UserInfo(hctx, oauth2.StaticTokenSource(tok))
		if err != nil {
			s.Log.Info("sso: userinfo refused", "err", err)
			return nil, matrix.Forbidden("The identity provider did not give your e-mail address")
		}
		if ui.Subject != idt.Subject {
			return nil, matrix.Forbidden("The identity provider's answers do not agree")
		}
		if err := ui.Claims(&claims); err != nil {
			return nil, matrix.Forbidden("The identity provider did not give your e-mail address")
		}
	}
	// Some providers send "true" as a string (a known quirk); anything
	// else than true is not verified, unless the operator trusts the
	// provider's addresses as they come.
	if v, ok := claims.EmailVerified.(bool); !(ok && v) && claims.EmailVerified != "true" && !s.cfg.TrustUnverifiedEmail {
		return nil, matrix.Errorf(http.StatusForbidden, threepid.ErrThreepidDenied, "The identity provider did not verify your e-mail address")
	}
	addr, err := threepid.Canonical(threepid.MediumEmail, claims.Email)
	if err != nil {
		return nil, matrix.Errorf(http.StatusForbidden, threepid.ErrThreepidDenied, "The identity provider sent no usable e-mail address")
	}
	if a.UIASession != "" {
		// A confirmation: the address must be bound to the session's
		// user. Nothing is created, whoever the provider names.
		owner, _, err := s.Directory.LocalInfo(ctx, threepid.MediumEmail, addr)
		if err != nil {
			return nil, err
		}
		if owner != a.UserID {
			s.Log.Info("sso: confirmation by another user refused", "session_user", a.UserID, "signed_in", owner)
			return nil, ErrOtherUser
		}
		return &Result{UserID: owner, UIASession: a.UIASession}, nil
	}
	userID, created, err := s.account(ctx, addr)
	if err != nil {
		return nil, err
	}
	token := accounts.NewToken("syl_")
	if err := s.Store.AddLoginToken(ctx, hash(token), userID, s.Now().Add(LoginTokenLifetime).UnixMilli()); err != nil {
		return nil, err
	}
	return &Result{UserID: userID, Created: created, RedirectURL: withLoginToken(a.RedirectURL, token), ClientURL: a.RedirectURL}, nil
}

// account returns the account of a verified address: the one it is bound
// to, else a new one, if the address belongs on this server (an external's
// only after a member invited it, as for registration).
func (s *Service) account(ctx context.Context, addr string) (string, bool, error) {
	home, external, err := s.Directory.Home(addr)
	if err != nil {
		return "", false, err
	}
	owner, invited, err := s.Directory.LocalInfo(ctx, threepid.MediumEmail, addr)
	if err != nil {
		return "", false, err
	}
	if owner != "" {
		return owner, false, nil
	}
	if home != s.cfg.ServerName {
		return "", false, matrix.Errorf(http.StatusForbidden, threepid.ErrThreepidDenied, "This e-mail address belongs on %s", home)
	}
	if external && !invited {
		return "", false, matrix.Errorf(http.StatusForbidden, threepid.ErrThreepidDenied, "An external address may sign up only after a member invited it")
	}
	res, err := s.Accounts.Register(ctx, accounts.RegisterRequest{Localpart: threepid.Localpart(addr), NumberIfTaken: true, InhibitLogin: true})
	if err != nil {
		return "", false, err
	}
	if err := s.Directory.Registered(ctx, res.UserID, addr); err != nil {
		// Another login of the same address bound it first (two tabs):
		// that account is the address's; this one stays empty.
		if owner, _, ierr := s.Directory.LocalInfo(ctx, threepid.MediumEmail, addr); ierr == nil && owner != "" {
			s.Log.Warn("sso: address bound by a concurrent login; new account left unused", "user", res.UserID, "owner", owner)
			return owner, false, nil
		}
		return "", false, err
	}
	if s.Profiles != nil {
		if err := s.Profiles.SetDisplayName(ctx, res.UserID, res.UserID, threepid.DisplayName(addr)); err != nil {
			s.Log.Warn("sso: setting the display name", "user", res.UserID, "err", err)
		}
	}
	return res.UserID, true, nil
}

func withLoginToken(redirectURL, token string) string {
	u, err := url.Parse(redirectURL)
	if err != nil { // checked at Begin
		return redirectURL
	}
	q := u.Query()
	q.Set("loginToken", token)
	u.RawQuery = q.Encode()
	return u.String()
}

func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.TrimSpace(s))
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// TokenUser takes a login token (m.login.token): the user it was issued
// to. An unknown, used or expired token is 403 M_FORBIDDEN (the spec's
// answer for an invalid login token).
func (s *Service) TokenUser(ctx context.Context, token string) (string, error) {
	if token == "" {
		return "", matrix.MissingParam("Missing token")
	}
	if len(token) > 256 {
		return "", matrix.Forbidden("Invalid login token")
	}
	userID, err := s.Store.TakeLoginToken(ctx, hash(token), s.Now().UnixMilli())
	if errors.Is(err, store.ErrNotFound) {
		return "", matrix.Forbidden("Invalid login token")
	}
	return userID, err
}
