package clientapi

import (
	"errors"
	"net/http"
	"strings"

	"conclave/internal/accounts"
	"conclave/internal/jsonhttp"
	"conclave/internal/matrix"
	"conclave/internal/ratelimit"
	"conclave/internal/server"
	"conclave/internal/store"
	"conclave/internal/threepid"
)

// Registration, login, refresh, logout and the Synapse-compatible
// shared-secret registration. Client-Server API, "Client Authentication"
// and "Account registration and management".

// authLimits are the token buckets for /login and /register, one set per
// client IP and one per account (nil when rate limits are off).
type authLimits struct {
	ip, account *ratelimit.Limiter
	// pair counts failed logins per (account, IP). A guesser is throttled by
	// it (and its IP bucket) long before the account-wide bucket, which is
	// accountFactor times larger, runs dry: so one attacker cannot lock the
	// owner out, and many attackers together still guess at a bounded rate.
	pair *ratelimit.Limiter
}

// accountFactor is how many times larger the account-wide failed-login
// bucket is than the per-(account, IP) one.
const accountFactor = 10

func (a *API) registerAccounts(mux Mux) {
	if a.Config.RateLimits {
		a.limits = &authLimits{
			ip:      ratelimit.New(a.Config.LoginRatePerSecond, a.Config.LoginRateBurst, 0),
			account: ratelimit.New(a.Config.LoginRatePerSecond*accountFactor, a.Config.LoginRateBurst*accountFactor, 0),
			pair:    ratelimit.New(a.Config.LoginRatePerSecond, a.Config.LoginRateBurst, 0),
		}
	}
	handle(mux, "GET", "/login", a.loginFlows)
	handle(mux, "POST", "/login", a.login)
	handle(mux, "POST", "/register", a.register)
	handle(mux, "GET", "/register/available", a.registerAvailable)
	// Synapse serves the policy under r0, v3 and unstable; Tchap's web
	// client calls r0. No authentication: clients show it before
	// registration.
	handle(mux, "GET", "/password_policy", a.passwordPolicy)
	mux.HandleFunc("GET /_matrix/client/unstable/password_policy", a.passwordPolicy)
	mux.HandleFunc("GET /_matrix/client/v1/register/m.login.registration_token/validity", a.registrationTokenValidity)
	handle(mux, "POST", "/refresh", a.refresh)
	mux.HandleFunc("POST /_matrix/client/v1/refresh", a.refresh)
	// An expired account may still log out (Synapse: allow_expired).
	handle(mux, "POST", "/logout", a.authedExpiredOK(a.logout))
	handle(mux, "POST", "/logout/all", a.authedExpiredOK(a.logoutAll))
	mux.HandleFunc("GET /_synapse/admin/v1/register", a.sharedSecretNonce)
	mux.HandleFunc("POST /_synapse/admin/v1/register", a.sharedSecretRegister)
	a.registerAccount(mux)
	a.registerDevices(mux)
}

// fail writes err, including the 401 of an unfinished user-interactive auth.
func fail(w http.ResponseWriter, r *http.Request, err error) {
	var uia *accounts.UIAError
	if errors.As(err, &uia) {
		jsonhttp.Write(w, uia.Status(), uia.Body())
		return
	}
	jsonhttp.Error(w, r, err)
}

// clientIP is the client's address: the TCP peer, or what a trusted reverse
// proxy says in X-Forwarded-For (server.WithClientIP, --trusted-proxies).
func clientIP(r *http.Request) string { return server.ClientIP(r) }

func limited(l *ratelimit.Limiter, key string, consume bool) error {
	var ok bool
	var wait = int64(0)
	if consume {
		o, d := l.Allow(key)
		ok, wait = o, d.Milliseconds()
	} else {
		o, d := l.Check(key)
		ok, wait = o, d.Milliseconds()
	}
	if ok {
		return nil
	}
	return matrix.LimitExceeded(max(wait, 1))
}

// check refuses a login attempt on account from ip while its failed-login
// buckets are empty, without taking a token.
func (l *authLimits) check(account, ip string) error {
	if err := limited(l.pair, account+"\x00"+ip, false); err != nil {
		return err
	}
	return limited(l.account, account, false)
}

// failed records a failed login on account from ip; the error is the 429
// the attempt after it would get.
func (l *authLimits) failed(account, ip string) error {
	errPair := limited(l.pair, account+"\x00"+ip, true)
	errAccount := limited(l.account, account, true)
	if errPair != nil {
		return errPair
	}
	return errAccount
}

// limitIP takes a token from the caller's IP bucket.
func (a *API) limitIP(r *http.Request) error {
	if a.limits == nil {
		return nil
	}
	return limited(a.limits.ip, clientIP(r), true)
}

// readOptional decodes a body that clients may leave empty.
func (a *API) readOptional(r *http.Request, v any) error {
	body, err := jsonhttp.ReadBody(r, a.maxBody)
	if err != nil {
		return err
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil
	}
	return jsonhttp.Decode(body, v)
}

// loginResponse is the body of a successful login or registration.
func (a *API) loginResponse(res *accounts.LoginResult) map[string]any {
	out := map[string]any{
		"user_id":      res.UserID,
		"access_token": res.AccessToken,
		"device_id":    res.DeviceID,
		"home_server":  a.Config.ServerName, // deprecated, still read by old clients
	}
	if res.RefreshToken != "" {
		out["refresh_token"] = res.RefreshToken
		out["expires_in_ms"] = res.ExpiresInMS
	}
	return out
}

func (a *API) loginFlows(w http.ResponseWriter, r *http.Request) {
	flows := []map[string]any{}
	if a.Config.PasswordLogin {
		flows = append(flows, map[string]any{"type": accounts.LoginPassword})
	}
	if a.SSO != nil {
		// Synapse's shape: the providers on the m.login.sso flow, and
		// m.login.token, which the SSO callback's loginToken is used with.
		flows = append(flows, map[string]any{"type": loginSSO, "identity_providers": []map[string]string{a.SSO.IdP()}},
			map[string]any{"type": loginToken})
	}
	jsonhttp.OK(w, map[string]any{"flows": flows})
}

type loginRequest struct {
	Type                     string               `json:"type"`
	Identifier               *accounts.Identifier `json:"identifier"`
	User                     string               `json:"user"`
	Password                 string               `json:"password"`
	DeviceID                 string               `json:"device_id"`
	InitialDeviceDisplayName *string              `json:"initial_device_display_name"`
	RefreshToken             bool                 `json:"refresh_token"`
	Token                    string               `json:"token"` // m.login.token
}

func (a *API) login(w http.ResponseWriter, r *http.Request) {
	if err := a.limitIP(r); err != nil {
		fail(w, r, err)
		return
	}
	var req loginRequest
	if err := jsonhttp.Read(r, a.maxBody, &req); err != nil {
		fail(w, r, err)
		return
	}
	switch {
	case req.Type == accounts.LoginPassword && a.Config.PasswordLogin:
	case req.Type == loginToken && a.SSO != nil:
		a.tokenLogin(w, r, req)
		return
	case req.Type == "":
		fail(w, r, matrix.MissingParam("Missing login type"))
		return
	default:
		// A type this server does not offer (password login turned off
		// included): Synapse's answer.
		fail(w, r, matrix.Errorf(http.StatusBadRequest, matrix.ErrUnknown, "Unknown login type %q", req.Type))
		return
	}
	if err := accounts.CheckDeviceID(req.DeviceID); err != nil {
		fail(w, r, err)
		return
	}
	ctx := r.Context()
	userID, err := a.Accounts.ResolveUser(ctx, req.Identifier, req.User)
	accountKey := strings.ToLower(userID)
	if err != nil {
		if me, ok := matrix.AsError(err); ok && me.Status == http.StatusForbidden {
			a.Accounts.SpendHashTime(ctx, req.Password)
		}
		if me, ok := matrix.AsError(err); ok && me.Status == http.StatusForbidden && a.limits != nil {
			// Failed attempts on unknown names count against that name too.
			name := req.User
			if req.Identifier != nil {
				name = req.Identifier.User
			}
			if lerr := a.limits.failed(strings.ToLower(name), clientIP(r)); lerr != nil {
				err = lerr
			}
		}
		fail(w, r, err)
		return
	}
	if a.limits != nil {
		// Per account, only failures take tokens, so an attacker's guesses
		// slow down guessing without locking the owner out of a first try.
		if err := a.limits.check(accountKey, clientIP(r)); err != nil {
			fail(w, r, err)
			return
		}
	}
	res, err := a.Accounts.PasswordLogin(ctx, userID, req.Password, accounts.DeviceOpts{
		DeviceID: req.DeviceID, DisplayName: req.InitialDeviceDisplayName, Refresh: req.RefreshToken, IP: clientIP(r),
	})
	if err != nil {
		if me, ok := matrix.AsError(err); ok && me.Code == matrix.ErrForbidden && a.limits != nil {
			a.limits.failed(accountKey, clientIP(r))
		}
		fail(w, r, err)
		return
	}
	jsonhttp.OK(w, a.loginResponse(res))
}

type registerRequest struct {
	Username                 string             `json:"username"`
	Password                 string             `json:"password"`
	DeviceID                 string             `json:"device_id"`
	InitialDeviceDisplayName *string            `json:"initial_device_display_name"`
	InhibitLogin             bool               `json:"inhibit_login"`
	RefreshToken             bool               `json:"refresh_token"`
	Auth                     *accounts.AuthDict `json:"auth"`
}

func (a *API) register(w http.ResponseWriter, r *http.Request) {
	if err := a.limitIP(r); err != nil {
		fail(w, r, err)
		return
	}
	kind := r.URL.Query().Get("kind")
	if kind != "" && kind != "user" && kind != "guest" {
		fail(w, r, matrix.InvalidParam("kind must be user or guest"))
		return
	}
	var req registerRequest
	if err := jsonhttp.Read(r, a.maxBody, &req); err != nil {
		fail(w, r, err)
		return
	}
	if err := accounts.CheckDeviceID(req.DeviceID); err != nil {
		fail(w, r, err)
		return
	}
	ctx := r.Context()
	dev := accounts.DeviceOpts{DeviceID: req.DeviceID, DisplayName: req.InitialDeviceDisplayName, Refresh: req.RefreshToken, IP: clientIP(r)}
	if kind == "guest" && a.Config.EmailDomains != "" {
		// Every account of a circle is someone's verified work address.
		fail(w, r, matrix.Errorf(http.StatusForbidden, matrix.ErrGuestAccessForbid, "Guest access is disabled"))
		return
	}
	if kind == "guest" {
		// Guests need no authentication and get a generated ID; the body's
		// username and password are ignored, as Synapse does.
		res, err := a.Accounts.Register(ctx, accounts.RegisterRequest{Guest: true, InhibitLogin: req.InhibitLogin, Device: dev})
		a.writeRegistered(w, r, res, err)
		return
	}
	flows := a.Accounts.RegistrationFlows()
	if len(flows) == 0 {
		fail(w, r, matrix.Forbidden("Registration has been disabled"))
		return
	}
	// The name and password are checked before authentication, so a client
	// learns that a name is taken before it goes through the stages. With
	// e-mail registration the name comes from the address instead.
	byEmail := a.Threepids != nil && a.Config.EmailDomains != ""
	if req.Username != "" && !byEmail {
		if _, err := a.Accounts.CheckUsername(ctx, req.Username); err != nil {
			fail(w, r, err)
			return
		}
	}
	if err := a.Accounts.CheckNewPasswordPolicy(req.Password); err != nil {
		fail(w, r, err)
		return
	}
	proved, err := a.Accounts.AuthenticateUIAResult(ctx, accounts.UIA{Purpose: "register", Flows: flows}, req.Auth)
	if err != nil {
		fail(w, r, err)
		return
	}
	if proved.Email != "" {
		a.registerByEmail(w, r, proved.Email, req, dev)
		return
	}
	res, err := a.Accounts.Register(ctx, accounts.RegisterRequest{Localpart: req.Username, Password: req.Password, InhibitLogin: req.InhibitLogin, Device: dev})
	a.writeRegistered(w, r, res, err)
}

// registerByEmail creates the account of a verified address: localpart and
// display name derived from it as Tchap does (threepid.Localpart,
// threepid.DisplayName), the address bound to it.
func (a *API) registerByEmail(w http.ResponseWriter, r *http.Request, email string, req registerRequest, dev accounts.DeviceOpts) {
	ctx := r.Context()
	var res *accounts.LoginResult
	_, err := a.Threepids.RegisterAccount(ctx, email, func(localpart string) (string, error) {
		var err error
		res, err = a.Accounts.Register(ctx, accounts.RegisterRequest{Localpart: localpart, NumberIfTaken: true,
			Password: req.Password, InhibitLogin: req.InhibitLogin, Device: dev})
		if err != nil {
			return "", err
		}
		return res.UserID, nil
	})
	if err != nil {
		fail(w, r, err)
		return
	}
	if a.Profiles != nil {
		if err := a.Profiles.SetDisplayName(ctx, res.UserID, res.UserID, threepid.DisplayName(email)); err != nil {
			fail(w, r, err)
			return
		}
	}
	a.writeRegistered(w, r, res, nil)
}

func (a *API) writeRegistered(w http.ResponseWriter, r *http.Request, res *accounts.LoginResult, err error) {
	if err != nil {
		fail(w, r, err)
		return
	}
	if res.AccessToken == "" { // inhibit_login
		jsonhttp.OK(w, map[string]any{"user_id": res.UserID, "home_server": a.Config.ServerName})
		return
	}
	jsonhttp.OK(w, a.loginResponse(res))
}

func (a *API) registerAvailable(w http.ResponseWriter, r *http.Request) {
	if err := a.limitIP(r); err != nil {
		fail(w, r, err)
		return
	}
	if len(a.Accounts.RegistrationFlows()) == 0 {
		fail(w, r, matrix.Forbidden("Registration has been disabled"))
		return
	}
	name := r.URL.Query().Get("username")
	if name == "" {
		fail(w, r, matrix.MissingParam("Missing username"))
		return
	}
	if _, err := a.Accounts.CheckUsername(r.Context(), name); err != nil {
		fail(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]bool{"available": true})
}

func (a *API) registrationTokenValidity(w http.ResponseWriter, r *http.Request) {
	if err := a.limitIP(r); err != nil {
		fail(w, r, err)
		return
	}
	if len(accounts.ParseTokens(a.Config.RegistrationTokens)) == 0 {
		fail(w, r, matrix.Forbidden("Registration tokens are not enabled"))
		return
	}
	tok := r.URL.Query().Get("token")
	if tok == "" {
		fail(w, r, matrix.MissingParam("Missing token"))
		return
	}
	jsonhttp.OK(w, map[string]bool{"valid": a.Accounts.ValidRegistrationToken(tok)})
}

func (a *API) refresh(w http.ResponseWriter, r *http.Request) {
	var req struct {
		RefreshToken *string `json:"refresh_token"`
	}
	if err := jsonhttp.Read(r, a.maxBody, &req); err != nil {
		fail(w, r, err)
		return
	}
	if req.RefreshToken == nil {
		fail(w, r, matrix.MissingParam("Missing refresh_token"))
		return
	}
	res, err := a.Accounts.Refresh(r.Context(), *req.RefreshToken)
	if err != nil {
		fail(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]any{"access_token": res.AccessToken, "refresh_token": res.RefreshToken, "expires_in_ms": res.ExpiresInMS})
}

func (a *API) logout(w http.ResponseWriter, r *http.Request, s *store.Session) {
	if err := a.Accounts.Logout(r.Context(), s); err != nil {
		fail(w, r, err)
		return
	}
	jsonhttp.Empty(w)
}

func (a *API) logoutAll(w http.ResponseWriter, r *http.Request, s *store.Session) {
	if err := a.Accounts.LogoutAll(r.Context(), s.UserID); err != nil {
		fail(w, r, err)
		return
	}
	jsonhttp.Empty(w)
}

// Shared-secret registration, as Synapse's admin API: GET gives a nonce,
// POST registers with an HMAC over it. Disabled (no secret): 400, as
// Synapse answers.

func (a *API) sharedSecretNonce(w http.ResponseWriter, r *http.Request) {
	if !a.Accounts.SharedSecretEnabled() {
		fail(w, r, matrix.Errorf(http.StatusBadRequest, matrix.ErrUnknown, "Shared secret registration is not enabled"))
		return
	}
	jsonhttp.OK(w, map[string]string{"nonce": a.Accounts.NewNonce()})
}

func (a *API) sharedSecretRegister(w http.ResponseWriter, r *http.Request) {
	if !a.Accounts.SharedSecretEnabled() {
		fail(w, r, matrix.Errorf(http.StatusBadRequest, matrix.ErrUnknown, "Shared secret registration is not enabled"))
		return
	}
	var req struct {
		Nonce       *string `json:"nonce"`
		Username    *string `json:"username"`
		Password    *string `json:"password"`
		Admin       bool    `json:"admin"`
		UserType    *string `json:"user_type"`
		DisplayName string  `json:"displayname"`
		MAC         *string `json:"mac"`
	}
	if err := jsonhttp.Read(r, a.maxBody, &req); err != nil {
		fail(w, r, err)
		return
	}
	switch {
	case req.Nonce == nil:
		fail(w, r, matrix.BadJSON("nonce must be specified"))
		return
	case req.Username == nil || *req.Username == "" || len(*req.Username) > 512 || strings.ContainsRune(*req.Username, 0):
		fail(w, r, matrix.BadJSON("Invalid username"))
		return
	case req.Password == nil || len(*req.Password) > accounts.MaxPasswordLength || strings.ContainsRune(*req.Password, 0):
		fail(w, r, matrix.BadJSON("Invalid password"))
		return
	case req.MAC == nil:
		fail(w, r, matrix.BadJSON("mac must be specified"))
		return
	}
	res, err := a.Accounts.SharedSecretRegister(r.Context(), accounts.SharedSecretRequest{
		Nonce: *req.Nonce, Username: *req.Username, Password: *req.Password, MAC: *req.MAC, Admin: req.Admin, UserType: req.UserType, DisplayName: req.DisplayName,
	})
	if err != nil {
		fail(w, r, err)
		return
	}
	jsonhttp.OK(w, a.loginResponse(res))
}

// passwordPolicy answers GET /password_policy: {} without a policy.
func (a *API) passwordPolicy(w http.ResponseWriter, r *http.Request) {
	jsonhttp.Write(w, http.StatusOK, a.Accounts.PasswordPolicy().Describe())
}
