package accounts

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"conclave/internal/matrix"
	"conclave/internal/store"
)

// Limits on client-chosen values.
const (
	MaxDeviceIDLength   = 255
	MaxDisplayNameRunes = 100 // Synapse's limit for device display names
	MaxDeleteDevices    = 1000
	maxRandomTries      = 10
)

// DeviceOpts describe the device a login or registration creates.
type DeviceOpts struct {
	DeviceID    string  // "": generate
	DisplayName *string // initial_device_display_name
	Refresh     bool    // issue a refresh token; the access token then expires
	IP          string
}

// LoginResult is what a login, registration or refresh hands out.
type LoginResult struct {
	UserID       string
	DeviceID     string
	AccessToken  string
	RefreshToken string // "" when none was asked for
	ExpiresInMS  int64  // 0: the access token does not expire
}

// RegisterRequest is a new account.
type RegisterRequest struct {
	Localpart    string // "": random
	Password     string // "": no password login
	Guest        bool
	Admin        bool
	InhibitLogin bool
	Device       DeviceOpts
	// NumberIfTaken: when Localpart is taken, try Localpart1, Localpart2…
	// (accounts derived from an e-mail address, whose earlier account was
	// deactivated: Tchap's rule).
	NumberIfTaken bool
}

// NormalizeLocalpart validates a requested username and returns the user ID
// it would get. Like Synapse, the requested name is lower-cased first (the
// spec calls it "the basis for the localpart"); what remains must match the
// localpart grammar and the full ID must fit in 255 bytes.
func (s *Service) NormalizeLocalpart(username string) (string, error) {
	local := strings.ToLower(username)
	if !matrix.ValidLocalpart(local) {
		return "", matrix.Errorf(http.StatusBadRequest, matrix.ErrInvalidUsername, "User ID can only contain characters a-z, 0-9, or '=_-./+'")
	}
	id := matrix.UserID(local, s.serverName)
	if len(id) > matrix.MaxIDLength {
		return "", matrix.Errorf(http.StatusBadRequest, matrix.ErrInvalidUsername, "User ID may not be longer than %d characters", matrix.MaxIDLength)
	}
	return id, nil
}

// CheckUsername validates username and checks it is free (M_USER_IN_USE).
func (s *Service) CheckUsername(ctx context.Context, username string) (string, error) {
	id, err := s.NormalizeLocalpart(username)
	if err != nil {
		return "", err
	}
	taken, err := s.store.UserIDTaken(ctx, id)
	if err != nil {
		return "", err
	}
	if taken {
		return "", userInUse()
	}
	return id, nil
}

func userInUse() error {
	return matrix.Errorf(http.StatusBadRequest, matrix.ErrUserInUse, "User ID already taken")
}

// CheckNewPassword bounds a password's length.
func CheckNewPassword(pw string) error {
	if len(pw) > MaxPasswordLength {
		return matrix.InvalidParam("Password is longer than %d bytes", MaxPasswordLength)
	}
	return nil
}

// Register creates an account and, unless InhibitLogin, a device.
func (s *Service) Register(ctx context.Context, req RegisterRequest) (*LoginResult, error) {
	if err := CheckNewPassword(req.Password); err != nil {
		return nil, err
	}
	var hash string
	if req.Password != "" && !req.Guest {
		h, err := s.hash.Hash(ctx, req.Password)
		if err != nil {
			return nil, err
		}
		hash = h
	}
	now := s.now().UnixMilli()
	u := &store.User{PasswordHash: hash, IsAdmin: req.Admin, IsGuest: req.Guest, CreatedTS: now}
	if req.Localpart != "" {
		id, err := s.NormalizeLocalpart(req.Localpart)
		if err != nil {
			return nil, err
		}
		u.UserID = id
		err = s.store.CreateUser(ctx, u)
		for n := 1; errors.Is(err, store.ErrConflict) && req.NumberIfTaken && n <= maxNumberedTries; n++ {
			if u.UserID, err = s.NormalizeLocalpart(req.Localpart + strconv.Itoa(n)); err != nil {
				return nil, err
			}
			err = s.store.CreateUser(ctx, u)
		}
		if err != nil {
			if errors.Is(err, store.ErrConflict) {
				return nil, userInUse()
			}
			return nil, err
		}
	} else {
		created := false
		for i := 0; i < maxRandomTries && !created; i++ {
			u.UserID = matrix.UserID(randomLocalpart(), s.serverName)
			err := s.store.CreateUser(ctx, u)
			if err == nil {
				created = true
			} else if !errors.Is(err, store.ErrConflict) {
				return nil, err
			}
		}
		if !created {
			return nil, errors.New("accounts: could not pick a free random user ID")
		}
	}
	if req.InhibitLogin {
		return &LoginResult{UserID: u.UserID}, nil
	}
	return s.newDevice(ctx, u.UserID, req.Device)
}

// randomLocalpart is 12 characters of a-z0-9 (about 62 bits).
func randomLocalpart() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	var b [12]byte
	rand.Read(b[:])
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b[:])
}

// randomDeviceID is 10 upper-case letters, as Synapse makes them.
func randomDeviceID() string {
	var b [10]byte
	rand.Read(b[:])
	for i := range b {
		b[i] = 'A' + b[i]%26
	}
	return string(b[:])
}

// CheckDeviceID validates a client-chosen device ID.
func CheckDeviceID(id string) error {
	if len(id) > MaxDeviceIDLength || !utf8.ValidString(id) {
		return matrix.InvalidParam("device_id must be valid UTF-8 of at most %d bytes", MaxDeviceIDLength)
	}
	return nil
}

// TruncateDisplayName cuts an initial device display name to the limit
// (Synapse truncates on login rather than refusing it).
func TruncateDisplayName(name *string) *string {
	if name == nil || utf8.RuneCountInString(*name) <= MaxDisplayNameRunes {
		return name
	}
	r := []rune(*name)
	out := string(r[:MaxDisplayNameRunes])
	return &out
}

func (s *Service) newDevice(ctx context.Context, userID string, o DeviceOpts) (*LoginResult, error) {
	if err := CheckDeviceID(o.DeviceID); err != nil {
		return nil, err
	}
	deviceID := o.DeviceID
	if deviceID == "" {
		deviceID = randomDeviceID()
	}
	now := s.now()
	res, tok := s.newTokens(userID, deviceID, o.Refresh, now)
	d := &store.Device{UserID: userID, DeviceID: deviceID, DisplayName: TruncateDisplayName(o.DisplayName), CreatedTS: now.UnixMilli(), LastSeenTS: now.UnixMilli(), LastSeenIP: o.IP}
	wctx, done := s.devicesChange(ctx, userID)
	revoked := s.sessions.revoking(userID) // a re-used device ID replaces the device's tokens
	err := s.store.CreateDevice(wctx, d, tok)
	revoked()
	done(err)
	if err != nil {
		return nil, err
	}
	s.seenWritten(store.DeviceSeen{UserID: userID, DeviceID: deviceID, IP: o.IP, TS: d.LastSeenTS})
	return res, nil
}

func (s *Service) newTokens(userID, deviceID string, refresh bool, now time.Time) (*LoginResult, store.NewToken) {
	res := &LoginResult{UserID: userID, DeviceID: deviceID, AccessToken: NewToken("syt_")}
	tok := store.NewToken{AccessHash: HashToken(res.AccessToken)}
	if refresh {
		res.RefreshToken = NewToken("syr_")
		res.ExpiresInMS = s.opts.AccessTokenLifetime.Milliseconds()
		tok.RefreshHash = HashToken(res.RefreshToken)
		tok.ExpiresTS = now.Add(s.opts.AccessTokenLifetime).UnixMilli()
	}
	return res, tok
}

// ResolveUser turns an m.login.password identifier (or the deprecated
// top-level "user") into a local user ID, matching case-insensitively as
// Synapse does. Unknown users give 403 M_FORBIDDEN, like a wrong password.
func (s *Service) ResolveUser(ctx context.Context, ident *Identifier, user string) (string, error) {
	if ident != nil {
		switch ident.Type {
		case "m.id.user":
			user = ident.User
		case "m.id.thirdparty":
			// An e-mail address bound to an account (Tchap's clients sign in
			// with the address).
			if ident.Medium != "email" || s.EmailOwner == nil {
				return "", matrix.Forbidden("Invalid username or password")
			}
			owner, err := s.EmailOwner(ctx, ident.Address)
			if err != nil {
				return "", err
			}
			if owner == "" {
				return "", matrix.Forbidden("Invalid username or password")
			}
			return owner, nil
		case "m.id.phone":
			// No phone numbers are kept here.
			return "", matrix.Forbidden("Invalid username or password")
		default:
			return "", matrix.Errorf(http.StatusBadRequest, matrix.ErrUnknown, "Unknown login identifier type")
		}
	}
	if user == "" {
		return "", matrix.MissingParam("Missing user identifier")
	}
	id := user
	if !strings.HasPrefix(user, "@") {
		id = matrix.UserID(user, s.serverName)
	} else if matrix.ServerOf(user) != s.serverName {
		return "", matrix.Forbidden("Invalid username or password")
	}
	if len(id) > matrix.MaxIDLength {
		return "", matrix.Forbidden("Invalid username or password")
	}
	found, err := s.store.UserIDCaseless(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return "", matrix.Forbidden("Invalid username or password")
	}
	return found, err
}

// CheckPassword verifies userID's password: 403 M_FORBIDDEN when wrong,
// 403 M_USER_DEACTIVATED for a deactivated account.
func (s *Service) CheckPassword(ctx context.Context, userID, password string) error {
	u, err := s.store.GetUser(ctx, userID)
	if errors.Is(err, store.ErrNotFound) {
		s.hash.burn(ctx, password)
		return matrix.Forbidden("Invalid username or password")
	}
	if err != nil {
		return err
	}
	if u.Deactivated {
		return matrix.Errorf(http.StatusForbidden, matrix.ErrUserDeactivated, "This account has been deactivated")
	}
	if u.PasswordHash == "" || len(password) > MaxPasswordLength {
		s.hash.burn(ctx, password)
		return matrix.Forbidden("Invalid username or password")
	}
	ok, err := s.hash.Verify(ctx, password, u.PasswordHash)
	if err != nil {
		return err
	}
	if !ok {
		return matrix.Forbidden("Invalid username or password")
	}
	return nil
}

// PasswordLogin logs userID in (after ResolveUser) with password.
func (s *Service) PasswordLogin(ctx context.Context, userID, password string, dev DeviceOpts) (*LoginResult, error) {
	if err := s.CheckPassword(ctx, userID, password); err != nil {
		return nil, err
	}
	return s.newDevice(ctx, userID, dev)
}

// LoginUser logs userID in after a proof other than its password (a
// login token from single sign-on): a new device, unless the account is
// deactivated (403 M_USER_DEACTIVATED) or gone (403 M_FORBIDDEN).
func (s *Service) LoginUser(ctx context.Context, userID string, dev DeviceOpts) (*LoginResult, error) {
	u, err := s.store.GetUser(ctx, userID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, matrix.Forbidden("Invalid login token")
	}
	if err != nil {
		return nil, err
	}
	if u.Deactivated {
		return nil, matrix.Errorf(http.StatusForbidden, matrix.ErrUserDeactivated, "This account has been deactivated")
	}
	return s.newDevice(ctx, userID, dev)
}

// Refresh exchanges a refresh token for a new pair. Unknown tokens give
// 401 M_UNKNOWN_TOKEN with soft_logout false.
func (s *Service) Refresh(ctx context.Context, refreshToken string) (*LoginResult, error) {
	if refreshToken == "" {
		return nil, unknownToken(false)
	}
	now := s.now()
	res, tok := s.newTokens("", "", true, now)
	sess, err := s.store.RotateRefreshToken(ctx, HashToken(refreshToken), tok, now.UnixMilli())
	if sess != nil {
		// The user is only known now, after the write: marked at once, so a
		// session cached before (or by a lookup that began before) is not
		// served from now on.
		s.sessions.revoking(sess.UserID)()
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, unknownToken(false)
	}
	if err != nil {
		return nil, err
	}
	res.UserID, res.DeviceID = sess.UserID, sess.DeviceID
	return res, nil
}

// Logout deletes the session's device with its tokens (and, through the
// store's device cleanups, its keys): POST /logout.
func (s *Service) Logout(ctx context.Context, sess *store.Session) error {
	wctx, done := s.devicesChange(ctx, sess.UserID)
	revoked := s.sessions.revoking(sess.UserID)
	err := s.store.DeleteDevices(wctx, sess.UserID, []string{sess.DeviceID})
	revoked()
	done(err)
	return err
}

// LogoutAll deletes every device of the user.
func (s *Service) LogoutAll(ctx context.Context, userID string) error {
	wctx, done := s.devicesChange(ctx, userID)
	revoked := s.sessions.revoking(userID)
	err := s.store.DeleteAllDevices(wctx, userID)
	revoked()
	done(err)
	return err
}

// ChangePassword sets a new password; with logoutDevices, every other
// device of the user is deleted (the caller's device stays).
func (s *Service) ChangePassword(ctx context.Context, sess *store.Session, newPassword string, logoutDevices bool) error {
	if newPassword == "" {
		return matrix.MissingParam("Missing new_password")
	}
	if err := s.CheckNewPasswordPolicy(newPassword); err != nil {
		return err
	}
	hash, err := s.hash.Hash(ctx, newPassword)
	if err != nil {
		return err
	}
	var keep *string
	if logoutDevices {
		keep = &sess.DeviceID
	}
	wctx, done := ctx, func(error) {}
	if logoutDevices {
		wctx, done = s.devicesChange(ctx, sess.UserID)
	}
	revoked := s.sessions.revoking(sess.UserID)
	err = s.store.SetPassword(wctx, sess.UserID, hash, keep)
	revoked()
	done(err)
	return err
}

// maxNumberedTries bounds NumberIfTaken.
const maxNumberedTries = 50

// ResetPassword sets userID's password after a proof other than the
// password (the e-mail reset); with logoutDevices every device goes.
func (s *Service) ResetPassword(ctx context.Context, userID, newPassword string, logoutDevices bool) error {
	if err := s.CheckNewPasswordPolicy(newPassword); err != nil {
		return err
	}
	hash, err := s.hash.Hash(ctx, newPassword)
	if err != nil {
		return err
	}
	var keep *string
	wctx, done := ctx, func(error) {}
	if logoutDevices {
		none := "" // no device has an empty ID: every one goes
		keep = &none
		wctx, done = s.devicesChange(ctx, userID)
	}
	revoked := s.sessions.revoking(userID)
	err = s.store.SetPassword(wctx, userID, hash, keep)
	revoked()
	done(err)
	return err
}

// Deactivate deactivates userID for good: devices and tokens go, the
// password is cleared, then OnDeactivate runs.
func (s *Service) Deactivate(ctx context.Context, userID string) error {
	wctx, done := s.devicesChange(ctx, userID)
	revoked := s.sessions.revoking(userID)
	err := s.store.Deactivate(wctx, userID)
	revoked()
	done(err)
	if err != nil {
		return err
	}
	if s.OnDeactivate != nil {
		s.OnDeactivate(context.WithoutCancel(ctx), userID)
	}
	return nil
}

// Devices.

func (s *Service) ListDevices(ctx context.Context, userID string) ([]store.Device, error) {
	return s.store.ListDevices(ctx, userID)
}

func (s *Service) GetDevice(ctx context.Context, userID, deviceID string) (*store.Device, error) {
	d, err := s.store.GetDevice(ctx, userID, deviceID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, matrix.NotFound("Unknown device")
	}
	return d, err
}

// SetDeviceName renames a device: 404 for an unknown one, 400 when too long.
func (s *Service) SetDeviceName(ctx context.Context, userID, deviceID, name string) error {
	if utf8.RuneCountInString(name) > MaxDisplayNameRunes {
		return matrix.InvalidParam("Device display name is too long (max %d)", MaxDisplayNameRunes)
	}
	wctx, done := s.devicesChange(ctx, userID)
	err := s.store.SetDeviceName(wctx, userID, deviceID, name)
	done(err)
	if errors.Is(err, store.ErrNotFound) {
		return matrix.NotFound("Unknown device")
	}
	return err
}

// DeleteDevices deletes devices with their tokens; unknown IDs are ignored.
func (s *Service) DeleteDevices(ctx context.Context, userID string, deviceIDs []string) error {
	if len(deviceIDs) > MaxDeleteDevices {
		return matrix.InvalidParam("At most %d devices at once", MaxDeleteDevices)
	}
	wctx, done := s.devicesChange(ctx, userID)
	revoked := s.sessions.revoking(userID)
	err := s.store.DeleteDevices(wctx, userID, deviceIDs)
	revoked()
	done(err)
	return err
}

// GetUser returns the account record.
func (s *Service) GetUser(ctx context.Context, userID string) (*store.User, error) {
	return s.store.GetUser(ctx, userID)
}

// Shared-secret registration (Synapse's /_synapse/admin/v1/register).

const (
	nonceLifetime = time.Minute // as Synapse
	maxNonces     = 10000
)

type nonces struct {
	mu sync.Mutex
	m  map[string]time.Time // nonce -> expiry
}

// SharedSecretEnabled reports whether shared-secret registration is on.
func (s *Service) SharedSecretEnabled() bool { return s.opts.SharedSecret != "" }

// NewNonce returns a single-use nonce valid for a minute.
func (s *Service) NewNonce() string {
	var b [32]byte
	rand.Read(b[:])
	n := hex.EncodeToString(b[:])
	now := s.now()
	s.nonces.mu.Lock()
	defer s.nonces.mu.Unlock()
	if len(s.nonces.m) >= maxNonces {
		for k, exp := range s.nonces.m {
			if now.After(exp) {
				delete(s.nonces.m, k)
			}
		}
		for k := range s.nonces.m {
			if len(s.nonces.m) < maxNonces {
				break
			}
			delete(s.nonces.m, k)
		}
	}
	s.nonces.m[n] = now.Add(nonceLifetime)
	return n
}

// SharedSecretRequest is the body of POST /_synapse/admin/v1/register.
type SharedSecretRequest struct {
	Nonce, Username, Password, MAC string
	Admin                          bool
	UserType                       *string
	DisplayName                    string
}

// SharedSecretMAC is the hex HMAC-SHA1 a client sends: over
// nonce\0username\0password\0admin|notadmin[\0user_type] keyed by the secret.
func SharedSecretMAC(secret, nonce, username, password string, admin bool, userType *string) string {
	m := hmac.New(sha1.New, []byte(secret))
	m.Write([]byte(nonce + "\x00" + username + "\x00" + password + "\x00"))
	if admin {
		m.Write([]byte("admin"))
	} else {
		m.Write([]byte("notadmin"))
	}
	if userType != nil {
		m.Write([]byte("\x00" + *userType))
	}
	return hex.EncodeToString(m.Sum(nil))
}

// SharedSecretRegister checks the nonce (consumed whatever happens next)
// and the MAC, then registers the account and logs it in.
func (s *Service) SharedSecretRegister(ctx context.Context, req SharedSecretRequest) (*LoginResult, error) {
	now := s.now()
	s.nonces.mu.Lock()
	exp, ok := s.nonces.m[req.Nonce]
	delete(s.nonces.m, req.Nonce)
	s.nonces.mu.Unlock()
	if !ok || now.After(exp) {
		return nil, matrix.Errorf(http.StatusBadRequest, matrix.ErrUnknown, "unrecognised nonce")
	}
	want := SharedSecretMAC(s.opts.SharedSecret, req.Nonce, req.Username, req.Password, req.Admin, req.UserType)
	got := strings.ToLower(req.MAC)
	if !hmac.Equal([]byte(want), []byte(got)) {
		return nil, matrix.Forbidden("HMAC incorrect")
	}
	return s.Register(ctx, RegisterRequest{Localpart: req.Username, Password: req.Password, Admin: req.Admin})
}

// SpendHashTime costs what one password verification costs: a login for a
// name that does not exist answers no faster than a wrong password.
func (s *Service) SpendHashTime(ctx context.Context, password string) { s.hash.burn(ctx, password) }
