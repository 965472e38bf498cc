// Package threepid owns e-mail addresses on accounts: validation sessions
// (requestToken mails a code and a link, submit_token validates), the
// m.login.email.identity proof for registration, password reset and adding
// an address, the addresses bound to accounts, invitations to addresses
// without an account, the localpart and display name an address gives
// (Tchap's rules), and the answers of the identity endpoints (/info, the
// v2 hashed lookup) for the whole circle, asking other servers over
// federation (Remote). The domain map (internal/emaildomains) says which
// server an address belongs to.
package threepid

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"sync"
	"time"

	"conclave/internal/emaildomains"
	"conclave/internal/event"
	"conclave/internal/mail"
	"conclave/internal/matrix"
	"conclave/internal/store"
)

// Purposes of a validation session.
const (
	PurposeRegister = "register"
	PurposePassword = "password"
	PurposeAdd      = "add"
)

// MediumEmail is the only medium supported.
const MediumEmail = "email"

// Lifetimes and bounds of validation sessions.
const (
	TokenLifetime   = time.Hour      // a mailed code is accepted this long
	SessionLifetime = 24 * time.Hour // a validated session proves the address this long
	MaxFailures     = 5              // wrong codes before the session is dead
	codeDigits      = 6
)

// Errcodes the spec and MSC4183 give the validation endpoints.
const (
	ErrThreepidAuthFailed = "M_THREEPID_AUTH_FAILED"
	ErrThreepidNotFound   = "M_THREEPID_NOT_FOUND"
	ErrThreepidDenied     = "M_THREEPID_DENIED"
	ErrThreepidMedium     = "M_THREEPID_MEDIUM_NOT_SUPPORTED"
	ErrSessionExpired     = "M_SESSION_EXPIRED"
	ErrTokenIncorrect     = "M_TOKEN_INCORRECT"
)

// Remote asks other servers of the circle (federation; nil without it).
type Remote interface {
	// Info asks server whether the address is bound there (the user ID, or
	// "") and whether someone invited it.
	Info(ctx context.Context, server, address string) (userID string, invited bool, err error)
	// Lookup asks server which of the hashes (made with pepper) are its
	// users' addresses.
	Lookup(ctx context.Context, server, pepper string, hashes []string) (map[string]string, error)
	// Invite tells server, the address's home, that sender invited it to
	// roomID.
	Invite(ctx context.Context, server string, inv store.ThreepidInvite) error
	// Bound tells server, whose users invited the address, that it now
	// has an account: userID.
	Bound(ctx context.Context, server, address, userID string) error
}

// Service is the e-mail address service.
type Service struct {
	ServerName string
	Store      store.Threepids
	Domains    *emaildomains.Map // nil: no map (any address, this server)
	Mailer     mail.Sender       // nil: no mail can be sent
	// BaseURL is public_base_url, without a trailing slash.
	BaseURL string
	Remote  Remote
	// CheckOpenID asks another server of the circle whose user an OpenID
	// token proves (nil without federation). openid.go.
	CheckOpenID OpenIDChecker
	// Key signs the exchange of an m.room.third_party_invite for an invite
	// (the event names its public key); InviteAs sends that invite as the
	// original inviter (the room writer). identity.go.
	Key      *event.SigningKey
	InviteAs func(ctx context.Context, roomID, sender, target string, extra map[string]json.RawMessage) error
	Log      *slog.Logger
	Now      func() time.Time

	locks   [64]sync.Mutex // registrations, by address (RegisterAccount)
	mailing sync.WaitGroup // invitation mails on their way (recordInvite)
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Pepper is the circle-wide pepper of the identity lookup hashes. Every
// server of a circle must hash the same way, so that a lookup one server
// cannot answer can be answered by the others, and stored hashes must stay
// valid: so it is a constant. The hash protects addresses in transit and
// from casual reading; the lookup itself is for signed-in users only and
// rate-limited, which is what keeps it from being an address oracle.
const Pepper = "conclave-circle-v1"

// LookupHash is the identity service v2 hash of an address: unpadded
// URL-safe base64 of SHA-256 over "address medium pepper".
func LookupHash(address, medium, pepper string) string {
	sum := sha256.Sum256([]byte(address + " " + medium + " " + pepper))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// Canonical checks an address and returns its stored form.
func Canonical(medium, address string) (string, error) {
	if medium != MediumEmail {
		return "", matrix.Errorf(http.StatusBadRequest, ErrThreepidMedium, "Only e-mail addresses are supported")
	}
	a, err := emaildomains.Canonical(address)
	if err != nil {
		return "", matrix.InvalidParam("Invalid e-mail address")
	}
	return a, nil
}

// Home returns the server an address belongs to and whether it is an
// external's: the map's answer, or this server without a map.
func (s *Service) Home(address string) (server string, external bool, err error) {
	if s.Domains == nil {
		return s.ServerName, false, nil
	}
	server, external, ok := s.Domains.Lookup(address)
	if !ok {
		return "", false, matrix.Errorf(http.StatusForbidden, ErrThreepidDenied, "This e-mail domain is not part of the circle")
	}
	return server, external, nil
}

// validClientSecret: the spec's grammar, [0-9a-zA-Z.=_-]{1,255}.
func validClientSecret(cs string) bool {
	if cs == "" || len(cs) > 255 {
		return false
	}
	for i := 0; i < len(cs); i++ {
		c := cs[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '.' || c == '=' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// RequestToken starts (or continues) a validation session for address and
// mails the code, unless sendAttempt is not above the session's last one
// (the spec's idempotence: the same sid, no new mail). The rules of each
// purpose are checked first: registration needs an address of this server
// (an external's only after an invite) that no account has; a password
// reset an address bound here; adding one an address of this server that
// no account has.
func (s *Service) RequestToken(ctx context.Context, purpose, clientSecret, address string, sendAttempt int) (sid string, err error) {
	if !validClientSecret(clientSecret) {
		return "", matrix.InvalidParam("Invalid client_secret")
	}
	if sendAttempt < 0 {
		return "", matrix.InvalidParam("Invalid send_attempt")
	}
	if s.Mailer == nil || s.BaseURL == "" {
		return "", matrix.Errorf(http.StatusBadRequest, ErrThreepidDenied, "This server does not send e-mail")
	}
	addr, err := Canonical(MediumEmail, address)
	if err != nil {
		return "", err
	}
	if err := s.checkPurpose(ctx, purpose, addr); err != nil {
		return "", err
	}
	code, err := newCode()
	if err != nil {
		return "", err
	}
	now := s.now()
	sidBytes := make([]byte, 16)
	rand.Read(sidBytes)
	sess := &store.ThreepidSession{SID: hex.EncodeToString(sidBytes), ClientSecret: clientSecret, Medium: MediumEmail, Address: addr,
		Purpose: purpose, SendAttempt: sendAttempt, TokenHash: hashToken(code), CreatedTS: now.UnixMilli(),
		TokenExpiresTS: now.Add(TokenLifetime).UnixMilli(), ExpiresTS: now.Add(SessionLifetime).UnixMilli()}
	got, resend, err := s.Store.StartThreepidSession(ctx, sess)
	if errors.Is(err, store.ErrConflict) {
		return "", matrix.Errorf(http.StatusTooManyRequests, matrix.ErrLimitExceeded, "Another request for this address is in progress")
	}
	if err != nil {
		return "", err
	}
	if !resend {
		return got.SID, nil
	}
	if err := s.Mailer.Send(ctx, s.validationMail(purpose, addr, got.SID, clientSecret, code)); err != nil {
		if s.Log != nil {
			s.Log.Warn("sending a validation mail", "err", err)
		}
		// Synapse: 500 "Unable to send email"; the mail server is down,
		// which is nobody's bad request.
		return "", matrix.Errorf(http.StatusInternalServerError, matrix.ErrUnknown, "Unable to send e-mail")
	}
	// Old sessions go now and then, here where they are made.
	_ = s.Store.DeleteExpiredThreepidSessions(ctx, now.UnixMilli())
	return got.SID, nil
}

func (s *Service) checkPurpose(ctx context.Context, purpose, addr string) error {
	switch purpose {
	case PurposeRegister, PurposeAdd:
		home, external, err := s.Home(addr)
		if err != nil {
			return err
		}
		if home != s.ServerName {
			return matrix.Errorf(http.StatusForbidden, ErrThreepidDenied, "This e-mail address belongs on %s", home)
		}
		if _, err := s.Store.UserByThreepid(ctx, MediumEmail, addr); err == nil {
			return matrix.Errorf(http.StatusBadRequest, matrix.ErrThreepidInUse, "This e-mail address is already in use")
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if external && purpose == PurposeRegister {
			invites, err := s.Store.ThreepidInvites(ctx, MediumEmail, addr)
			if err != nil {
				return err
			}
			if len(invites) == 0 {
				return matrix.Errorf(http.StatusForbidden, ErrThreepidDenied, "An external address may register only after a member invited it")
			}
		}
		return nil
	case PurposePassword:
		if _, err := s.Store.UserByThreepid(ctx, MediumEmail, addr); errors.Is(err, store.ErrNotFound) {
			return matrix.Errorf(http.StatusBadRequest, ErrThreepidNotFound, "Your e-mail address has not been found on this server")
		} else if err != nil {
			return err
		}
		return nil
	}
	return fmt.Errorf("threepid: unknown purpose %q", purpose)
}

// newCode is a random 6-digit code: short enough to type, and a session
// dies after MaxFailures wrong ones.
func newCode() (string, error) {
	n, err := rand.Int(rand.Reader, big.NewInt(1_000_000))
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%0*d", codeDigits, n.Int64()), nil
}

func hashToken(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// SubmitPath is where the link in a mail points and where a client posts
// the code (submit_url): one endpoint for every purpose.
const SubmitPath = "/_matrix/client/unstable/registration/email/submit_token"

// SubmitURL is the absolute submit_url.
func (s *Service) SubmitURL() string { return s.BaseURL + SubmitPath }

func (s *Service) validationMail(purpose, addr, sid, clientSecret, code string) mail.Message {
	link := s.SubmitURL() + "?" + url.Values{"sid": {sid}, "client_secret": {clientSecret}, "token": {code}}.Encode()
	var subject, what string
	switch purpose {
	case PurposeRegister:
		subject, what = "Confirm your e-mail address", "to create your account on "+s.ServerName
	case PurposePassword:
		subject, what = "Reset your password", "to reset the password of your account on "+s.ServerName
	default:
		subject, what = "Confirm your e-mail address", "to add it to your account on "+s.ServerName
	}
	text := "Hello,\n\n" +
		"Someone, probably you, asked to use this e-mail address " + what + ".\n\n" +
		"Open this link to confirm:\n" + link + "\n\n" +
		"or enter this code: " + code + "\n\n" +
		"The code is valid for one hour. If it was not you, ignore this mail: nothing will happen.\n"
	return mail.Message{To: addr, Subject: subject, Text: text}
}

// SubmitToken validates a session with the mailed code.
func (s *Service) SubmitToken(ctx context.Context, sid, clientSecret, token string) error {
	if sid == "" || clientSecret == "" || token == "" {
		return matrix.MissingParam("sid, client_secret and token are required")
	}
	sess, err := s.Store.ThreepidSession(ctx, sid)
	if errors.Is(err, store.ErrNotFound) {
		return matrix.Errorf(http.StatusBadRequest, ErrThreepidAuthFailed, "Unknown session")
	}
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare([]byte(sess.ClientSecret), []byte(clientSecret)) != 1 {
		return matrix.Errorf(http.StatusBadRequest, ErrThreepidAuthFailed, "Unknown session")
	}
	now := s.now().UnixMilli()
	if sess.ValidatedTS != 0 && now <= sess.ExpiresTS {
		return nil // the link opened twice
	}
	if now > sess.TokenExpiresTS || now > sess.ExpiresTS || sess.Failures >= MaxFailures {
		return matrix.Errorf(http.StatusBadRequest, ErrSessionExpired, "This code has expired: ask for a new one")
	}
	if subtle.ConstantTimeCompare(sess.TokenHash, hashToken(token)) != 1 {
		if _, err := s.Store.ThreepidTokenFailed(ctx, sid); err != nil {
			return err
		}
		return matrix.Errorf(http.StatusBadRequest, ErrTokenIncorrect, "Wrong code")
	}
	return s.Store.ValidateThreepidSession(ctx, sid, now)
}

// Validated returns the address a validated session proves for purpose.
// An unvalidated session is 401 M_UNAUTHORIZED, what Synapse answers while
// the user has not opened the link yet (clients poll with it).
func (s *Service) Validated(ctx context.Context, purpose string, sid, clientSecret string) (string, error) {
	sess, err := s.Store.ThreepidSession(ctx, sid)
	if errors.Is(err, store.ErrNotFound) {
		return "", matrix.Errorf(http.StatusUnauthorized, ErrThreepidAuthFailed, "Unknown validation session")
	}
	if err != nil {
		return "", err
	}
	if subtle.ConstantTimeCompare([]byte(sess.ClientSecret), []byte(clientSecret)) != 1 || sess.Purpose != purpose {
		return "", matrix.Errorf(http.StatusUnauthorized, ErrThreepidAuthFailed, "Unknown validation session")
	}
	if s.now().UnixMilli() > sess.ExpiresTS {
		return "", matrix.Errorf(http.StatusUnauthorized, ErrSessionExpired, "The validation session has expired")
	}
	if sess.ValidatedTS == 0 {
		return "", matrix.Errorf(http.StatusUnauthorized, matrix.ErrUnauthorized, "The e-mail address has not been validated yet: open the link in the mail")
	}
	return sess.Address, nil
}

// UIAPurpose maps a UIA operation to the session purpose that proves it.
func UIAPurpose(uiaPurpose string) string {
	switch uiaPurpose {
	case "register":
		return PurposeRegister
	case "password":
		return PurposePassword
	}
	return PurposeAdd
}

// Bind binds a validated address to userID.
func (s *Service) Bind(ctx context.Context, userID, address string) error {
	now := s.now().UnixMilli()
	err := s.Store.AddThreepid(ctx, &store.Threepid{UserID: userID, Medium: MediumEmail, Address: address, ValidatedTS: now, AddedTS: now,
		LookupHash: LookupHash(address, MediumEmail, Pepper)})
	if errors.Is(err, store.ErrConflict) {
		return matrix.Errorf(http.StatusBadRequest, matrix.ErrThreepidInUse, "This e-mail address is already in use")
	}
	return err
}

// Owner returns the local user an address is bound to ("" if none).
func (s *Service) Owner(ctx context.Context, address string) (string, error) {
	addr, err := emaildomains.Canonical(address)
	if err != nil {
		return "", nil
	}
	u, err := s.Store.UserByThreepid(ctx, MediumEmail, addr)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	return u, err
}

// List returns a user's addresses.
func (s *Service) List(ctx context.Context, userID string) ([]store.Threepid, error) {
	return s.Store.UserThreepids(ctx, userID)
}

// Unbind removes an address from userID's account; false if it was not
// theirs.
func (s *Service) Unbind(ctx context.Context, userID, medium, address string) (bool, error) {
	addr, err := Canonical(medium, address)
	if err != nil {
		return false, err
	}
	return s.Store.DeleteThreepid(ctx, userID, MediumEmail, addr)
}
