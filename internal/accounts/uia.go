package accounts

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"conclave/internal/matrix"
	"conclave/internal/store"
)

// User-interactive authentication (Client-Server API, "User-Interactive
// Authentication API"). Sessions live in memory: they are short-lived and a
// restart only makes a client start its dance over.

// Login and UIA stage types.
const (
	LoginPassword          = "m.login.password"
	LoginDummy             = "m.login.dummy"
	LoginRegistrationToken = "m.login.registration_token"
	LoginEmailIdentity     = "m.login.email.identity"
	// LoginSSO is completed out of band, in a browser, through the
	// fallback page (CompleteUIAStage); the client then sends the session
	// alone.
	LoginSSO = "m.login.sso"
)

// ThreepidCreds name a validation session (requestToken, then the mailed
// token): the m.login.email.identity stage's proof of an address.
type ThreepidCreds struct {
	SID          string `json:"sid"`
	ClientSecret string `json:"client_secret"`
	IDServer     string `json:"id_server,omitempty"`
	IDAccess     string `json:"id_access_token,omitempty"`
}

// Flow is one way to complete authentication.
type Flow struct {
	Stages []string `json:"stages"`
}

// Identifier is the identifier object of m.login.password.
type Identifier struct {
	Type string `json:"type"`
	User string `json:"user"`
	// m.id.thirdparty
	Medium  string `json:"medium"`
	Address string `json:"address"`
}

// AuthDict is the "auth" object a client sends.
type AuthDict struct {
	Type       string      `json:"type"`
	Session    string      `json:"session"`
	Identifier *Identifier `json:"identifier"`
	User       string      `json:"user"` // deprecated m.login.password form
	Password   string      `json:"password"`
	Token      string      `json:"token"` // m.login.registration_token
	// ThreepidCreds: m.login.email.identity (threepidCreds is the form
	// the spec's older releases and some clients send).
	ThreepidCreds       *ThreepidCreds `json:"threepid_creds"`
	ThreepidCredsLegacy *ThreepidCreds `json:"threepidCreds"`
}

// UIAResult is what a completed authentication proved besides the stages.
type UIAResult struct {
	// Email is the address an m.login.email.identity stage proved ("" if
	// the flow had none).
	Email string
}

// UIAError is the 401 answer of an unfinished authentication: which flows
// exist, which stages this session completed, and, when the last attempt
// failed, the error (errcode and error sit beside the flows).
type UIAError struct {
	Flows     []Flow
	Params    map[string]any
	Session   string
	Completed []string
	Err       *matrix.Error
}

func (e *UIAError) Error() string {
	if e.Err != nil {
		return "user-interactive auth: " + e.Err.Error()
	}
	return "user-interactive auth required"
}

// Body is the JSON body of the 401 response.
func (e *UIAError) Body() map[string]any {
	b := map[string]any{"flows": e.Flows, "params": e.Params, "session": e.Session, "completed": e.Completed}
	if e.Err != nil {
		b["errcode"] = e.Err.Code
		b["error"] = e.Err.Msg
		for k, v := range e.Err.Extra {
			b[k] = v
		}
	}
	return b
}

// Status is always 401.
func (e *UIAError) Status() int { return http.StatusUnauthorized }

// UIA describes what an endpoint requires.
type UIA struct {
	// Purpose names the operation ("register", "delete_devices", …): a
	// session started for one operation cannot authorise another.
	Purpose string
	// UserID is the authenticated caller ("" for registration): a session is
	// bound to its user, and m.login.password must name that user.
	UserID string
	Flows  []Flow
}

const (
	uiaLifetime    = 30 * time.Minute
	uiaMaxSessions = 10000
)

type uiaSession struct {
	purpose, userID string
	completed       []string
	expires         time.Time
	email           string // proved by m.login.email.identity
}

type uiaSessions struct {
	mu sync.Mutex
	m  map[string]*uiaSession
	// used: IDs of sessions that completed here, until they would have
	// expired, so they are not adopted again (UIASessionKey).
	used map[string]time.Time
}

// Authenticate runs one step of user-interactive authentication for
// operation u with the client's auth object (nil: absent). It returns nil
// once a flow is complete (and forgets the session: it authorises one
// operation), a *UIAError for the 401 answer, or a *matrix.Error.
func (s *Service) AuthenticateUIA(ctx context.Context, u UIA, auth *AuthDict) error {
	_, err := s.AuthenticateUIAResult(ctx, u, auth)
	return err
}

// AuthenticateUIAResult is AuthenticateUIA that also returns what the
// completed flow proved (the e-mail address of m.login.email.identity).
func (s *Service) AuthenticateUIAResult(ctx context.Context, u UIA, auth *AuthDict) (UIAResult, error) {
	if len(u.Flows) == 0 {
		return UIAResult{}, matrix.Forbidden("No authentication flow is available")
	}
	now := s.now()
	var id string
	var sess *uiaSession
	fresh := false // a session this call starts (or adopts) here
	if auth != nil && auth.Session != "" {
		id = auth.Session
		s.uia.mu.Lock()
		sess = s.uia.m[id]
		if sess != nil && now.After(sess.expires) {
			delete(s.uia.m, id)
			sess = nil
		}
		s.uia.mu.Unlock()
		if sess == nil && s.issuedUIASession(id) && !s.usedUIASession(id, now) {
			sess = s.adoptUIASession(id, u, now)
			fresh = true
		}
		if sess == nil {
			// Synapse: 400 M_UNKNOWN "Unknown session ID".
			return UIAResult{}, matrix.Errorf(http.StatusBadRequest, matrix.ErrUnknown, "Unknown session ID")
		}
		if sess.purpose != u.Purpose || sess.userID != u.UserID {
			return UIAResult{}, matrix.Forbidden("Requested operation has changed during the UI authentication session")
		}
	} else {
		id, sess = s.newUIASession(u, now)
		fresh = true
	}
	ssoShared := s.SSOSessions != nil && stageAllowed(u.Flows, LoginSSO)
	if fresh && ssoShared {
		// The fallback page and the provider's callback may reach
		// another process: they find the session in the database.
		if err := s.SSOSessions.AddUIASSOSession(ctx, id, u.UserID, ssoPurpose(u.Purpose), sess.expires.UnixMilli()); err != nil {
			return UIAResult{}, err
		}
		// Expired rows go at most once a minute, here where they are made
		// (a failure is retried at the next sweep).
		if last := s.ssoSweep.Load(); now.UnixMilli()-last > time.Minute.Milliseconds() && s.ssoSweep.CompareAndSwap(last, now.UnixMilli()) {
			_ = s.SSOSessions.DeleteExpiredSSO(ctx, now.UnixMilli())
		}
	}
	challenge := func(err *matrix.Error) error {
		s.uia.mu.Lock()
		completed := slices.Clone(sess.completed)
		s.uia.mu.Unlock()
		if completed == nil {
			completed = []string{}
		}
		return &UIAError{Flows: u.Flows, Params: map[string]any{}, Session: id, Completed: completed, Err: err}
	}
	if auth == nil || auth.Type == "" || auth.Type == LoginSSO {
		// Nothing new to check; stages done out of band (m.login.sso in
		// the fallback page) may have completed a flow. Spec: "Fallback",
		// the client then re-issues the request with the session only.
		if auth != nil && auth.Type == LoginSSO && !stageAllowed(u.Flows, LoginSSO) {
			return UIAResult{}, matrix.Errorf(http.StatusBadRequest, matrix.ErrUnrecognized, "Unrecognised authentication type %q", auth.Type)
		}
		if auth != nil && auth.Session != "" {
			stage := ""
			if ssoShared {
				// Completed by the provider's callback, in any process:
				// taken once, for this user and operation only.
				took, err := s.SSOSessions.TakeUIASSO(ctx, id, u.UserID, ssoPurpose(u.Purpose), now.UnixMilli())
				if err != nil {
					return UIAResult{}, err
				}
				if took {
					stage = LoginSSO
				}
			}
			if result, done := s.finishUIA(id, sess, u, stage, "", now); done {
				return result, nil
			}
		}
		return UIAResult{}, challenge(nil)
	}
	if !stageAllowed(u.Flows, auth.Type) {
		return UIAResult{}, matrix.Errorf(http.StatusBadRequest, matrix.ErrUnrecognized, "Unrecognised authentication type %q", auth.Type)
	}
	email, err := s.checkStage(ctx, u, auth)
	if err != nil {
		if errors.Is(err, errOtherUser) {
			// Synapse answers a plain 403 (no new challenge) when the stage
			// succeeded for someone other than the requester; Complement's
			// TestDeviceManagement expects it.
			return UIAResult{}, matrix.Forbidden("Invalid auth: the credentials are not the requesting user's")
		}
		if me, ok := matrix.AsError(err); ok && me.Status == http.StatusUnauthorized || ok && me.Status == http.StatusForbidden {
			return UIAResult{}, challenge(me)
		}
		return UIAResult{}, err
	}
	result, done := s.finishUIA(id, sess, u, auth.Type, email, now)
	if !done {
		return UIAResult{}, challenge(nil)
	}
	return result, nil
}

// finishUIA records a completed stage (if any) and, when that completes one
// of the flows, forgets the session (it authorises one operation).
func (s *Service) finishUIA(id string, sess *uiaSession, u UIA, stage, email string, now time.Time) (UIAResult, bool) {
	s.uia.mu.Lock()
	defer s.uia.mu.Unlock()
	if stage != "" && !slices.Contains(sess.completed, stage) {
		sess.completed = append(sess.completed, stage)
	}
	if email != "" {
		sess.email = email
	}
	// A flow is complete when all its stages are (a stage done out of
	// band for a flow the endpoint does not offer completes none).
	if !flowComplete(u.Flows, sess.completed) {
		return UIAResult{}, false
	}
	delete(s.uia.m, id)
	if s.UIASessionKey != nil {
		s.markUsedLocked(id, sess.expires, now)
	}
	return UIAResult{Email: sess.email}, true
}

// UIASessionInfo is what the fallback page shows of a session.
type UIASessionInfo struct {
	UserID, Purpose string
}

// SSOSessionStore keeps the UIA sessions that offer m.login.sso where
// every process sees them (store.SSO, migration 0036).
type SSOSessionStore interface {
	AddUIASSOSession(ctx context.Context, id, userID, purpose string, expiresTS int64) error
	UIASSOSession(ctx context.Context, id string, now int64) (userID, purpose string, err error)
	CompleteUIASSO(ctx context.Context, id, userID string, now int64) error
	TakeUIASSO(ctx context.Context, id, userID, purpose string, now int64) (bool, error)
	DeleteExpiredSSO(ctx context.Context, now int64) error
}

// ssoPurpose is how a session's operation is kept in the database: its
// name (shown by the fallback page) and a digest of the whole (device IDs
// and all, which may hold bytes a database's text refuses).
func ssoPurpose(purpose string) string {
	op, _, _ := strings.Cut(purpose, "\x00")
	sum := sha256.Sum256([]byte(purpose))
	return op + " " + base64.RawURLEncoding.EncodeToString(sum[:])
}

// UIASession returns a live session (for the fallback page): this
// process's, else one offering m.login.sso that another process issued;
// ErrUnknownUIASession if none.
func (s *Service) UIASession(ctx context.Context, id string) (UIASessionInfo, error) {
	s.uia.mu.Lock()
	sess := s.uia.m[id]
	if sess != nil && !s.now().After(sess.expires) {
		s.uia.mu.Unlock()
		return UIASessionInfo{UserID: sess.userID, Purpose: sess.purpose}, nil
	}
	s.uia.mu.Unlock()
	if s.SSOSessions != nil && id != "" {
		userID, purpose, err := s.SSOSessions.UIASSOSession(ctx, id, s.now().UnixMilli())
		if err == nil {
			op, _, _ := strings.Cut(purpose, " ")
			return UIASessionInfo{UserID: userID, Purpose: op}, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return UIASessionInfo{}, err
		}
	}
	return UIASessionInfo{}, ErrUnknownUIASession
}

var errOtherConfirmer = matrix.Forbidden("You confirmed as another user than the one who asked for this action")

// ErrUnknownUIASession: no such live session.
var ErrUnknownUIASession = matrix.Errorf(http.StatusBadRequest, matrix.ErrUnknown, "Unknown session ID")

// CompleteUIAStage marks stage done in session id, out of band (the SSO
// fallback page, after the provider proved userID). The session must be
// live and userID its user: a stage proved for someone else completes
// nothing.
func (s *Service) CompleteUIAStage(ctx context.Context, id, stage, userID string) error {
	if stage == LoginSSO && s.SSOSessions != nil {
		err := s.SSOSessions.CompleteUIASSO(ctx, id, userID, s.now().UnixMilli())
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if _, _, err := s.SSOSessions.UIASSOSession(ctx, id, s.now().UnixMilli()); err == nil {
			return errOtherConfirmer
		}
		return ErrUnknownUIASession
	}
	s.uia.mu.Lock()
	defer s.uia.mu.Unlock()
	sess := s.uia.m[id]
	if sess == nil || s.now().After(sess.expires) {
		return ErrUnknownUIASession
	}
	if sess.userID == "" || sess.userID != userID {
		return errOtherConfirmer
	}
	if !slices.Contains(sess.completed, stage) {
		sess.completed = append(sess.completed, stage)
	}
	return nil
}

func (s *Service) newUIASession(u UIA, now time.Time) (string, *uiaSession) {
	id := NewToken("")
	if s.UIASessionKey != nil {
		id += "." + s.uiaMAC(id)
	}
	return id, s.adoptUIASession(id, u, now)
}

func (s *Service) uiaMAC(random string) string {
	m := hmac.New(sha256.New, s.UIASessionKey)
	m.Write([]byte(random))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

func (s *Service) usedUIASession(id string, now time.Time) bool {
	s.uia.mu.Lock()
	defer s.uia.mu.Unlock()
	exp, ok := s.uia.used[id]
	return ok && now.Before(exp)
}

func (s *Service) markUsedLocked(id string, expires, now time.Time) {
	if s.uia.used == nil {
		s.uia.used = map[string]time.Time{}
	}
	if len(s.uia.used) >= uiaMaxSessions {
		for k, exp := range s.uia.used {
			if !now.Before(exp) || len(s.uia.used) >= uiaMaxSessions {
				delete(s.uia.used, k)
			}
		}
	}
	s.uia.used[id] = expires
}

// issuedUIASession reports whether id is a session ID some process sharing
// UIASessionKey issued.
func (s *Service) issuedUIASession(id string) bool {
	random, mac, ok := strings.Cut(id, ".")
	return s.UIASessionKey != nil && ok && len(id) <= 128 && hmac.Equal([]byte(mac), []byte(s.uiaMAC(random)))
}

// adoptUIASession stores a fresh session under id (see AdoptUIASessions).
func (s *Service) adoptUIASession(id string, u UIA, now time.Time) *uiaSession {
	sess := &uiaSession{purpose: u.Purpose, userID: u.UserID, expires: now.Add(uiaLifetime)}
	s.uia.mu.Lock()
	defer s.uia.mu.Unlock()
	if len(s.uia.m) >= uiaMaxSessions {
		for k, v := range s.uia.m {
			if now.After(v.expires) {
				delete(s.uia.m, k)
			}
		}
		// Still full: drop the sessions closest to expiry.
		for len(s.uia.m) >= uiaMaxSessions {
			var oldest string
			var t time.Time
			for k, v := range s.uia.m {
				if oldest == "" || v.expires.Before(t) {
					oldest, t = k, v.expires
				}
			}
			delete(s.uia.m, oldest)
		}
	}
	s.uia.m[id] = sess
	return sess
}

func stageAllowed(flows []Flow, stage string) bool {
	for _, f := range flows {
		if slices.Contains(f.Stages, stage) {
			return true
		}
	}
	return false
}

func flowComplete(flows []Flow, completed []string) bool {
	for _, f := range flows {
		ok := true
		for _, st := range f.Stages {
			if !slices.Contains(completed, st) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// errOtherUser marks a password stage that authenticated a user other than
// the one making the request.
var errOtherUser = errors.New("uia: authenticated user is not the requester")

// checkStage checks one stage; for m.login.email.identity it returns the
// address proved.
func (s *Service) checkStage(ctx context.Context, u UIA, auth *AuthDict) (string, error) {
	switch auth.Type {
	case LoginDummy:
		return "", nil
	case LoginRegistrationToken:
		if s.ValidRegistrationToken(auth.Token) {
			return "", nil
		}
		return "", matrix.Errorf(http.StatusUnauthorized, matrix.ErrForbidden, "Invalid registration token")
	case LoginPassword:
		userID, err := s.ResolveUser(ctx, auth.Identifier, auth.User)
		if err != nil {
			return "", err
		}
		if err := s.CheckPassword(ctx, userID, auth.Password); err != nil {
			return "", err
		}
		if userID != u.UserID {
			return "", errOtherUser
		}
		return "", nil
	case LoginEmailIdentity:
		creds := auth.ThreepidCreds
		if creds == nil {
			creds = auth.ThreepidCredsLegacy
		}
		if creds == nil || creds.SID == "" || creds.ClientSecret == "" {
			return "", matrix.MissingParam("Missing threepid_creds (sid, client_secret)")
		}
		if s.CheckEmail == nil {
			return "", matrix.Errorf(http.StatusBadRequest, matrix.ErrUnrecognized, "E-mail addresses are not verified by this server")
		}
		email, err := s.CheckEmail(ctx, u.Purpose, *creds)
		if err != nil {
			return "", err
		}
		if u.UserID != "" && s.EmailOwner != nil {
			// An authenticated operation proves the caller by an address
			// bound to the caller.
			owner, err := s.EmailOwner(ctx, email)
			if err != nil {
				return "", err
			}
			if owner != u.UserID {
				return "", errOtherUser
			}
		}
		return email, nil
	}
	return "", matrix.Errorf(http.StatusBadRequest, matrix.ErrUnrecognized, "Unrecognised authentication type %q", auth.Type)
}

// ValidRegistrationToken reports whether token is one of the configured
// registration tokens (constant-time per token).
func (s *Service) ValidRegistrationToken(token string) bool {
	if token == "" {
		return false
	}
	ok := 0
	for _, t := range s.opts.RegistrationTokens {
		ok |= subtle.ConstantTimeCompare([]byte(t), []byte(token))
	}
	return ok == 1
}

// RegistrationFlows are the flows /register offers; none means closed.
// With EmailRegistration every flow ends with m.login.email.identity: an
// account needs a verified address (the domain map decides which).
func (s *Service) RegistrationFlows() []Flow {
	var flows []Flow
	if s.opts.EmailRegistration {
		if s.opts.OpenRegistration {
			flows = append(flows, Flow{Stages: []string{LoginEmailIdentity}})
		}
		if len(s.opts.RegistrationTokens) > 0 {
			flows = append(flows, Flow{Stages: []string{LoginRegistrationToken, LoginEmailIdentity}})
		}
		return flows
	}
	if s.opts.OpenRegistration {
		flows = append(flows, Flow{Stages: []string{LoginDummy}})
	}
	if len(s.opts.RegistrationTokens) > 0 {
		flows = append(flows, Flow{Stages: []string{LoginRegistrationToken}})
	}
	return flows
}

// ParseTokens splits the comma-separated registration_tokens setting.
func ParseTokens(s string) []string {
	var out []string
	for _, t := range strings.Split(s, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}
