// Package clientapi serves the Matrix Client-Server API (/_matrix/client/*):
// one file per area. Handlers parse the request, authorise the caller, call a
// service and write JSON. No SQL and no Matrix rules live here.
package clientapi

import (
	"conclave/internal/syncfilter"
	"context"
	"fmt"
	"net/http"
	"runtime/debug"
	"strings"

	"conclave/internal/accountdata"
	"conclave/internal/accounts"
	"conclave/internal/config"
	"conclave/internal/federation"
	"conclave/internal/jsonhttp"
	"conclave/internal/keys"
	"conclave/internal/notices"
	"conclave/internal/presence"
	"conclave/internal/profile"
	"conclave/internal/push"
	"conclave/internal/ratelimit"
	"conclave/internal/receipts"
	"conclave/internal/room"
	"conclave/internal/slidingsync"
	"conclave/internal/sso"
	"conclave/internal/store"
	"conclave/internal/syncer"
	"conclave/internal/threadsubs"
	"conclave/internal/threepid"
	"conclave/internal/typing"
	"conclave/internal/validity"
)

// Deps are the services the API calls.
type Deps struct {
	Config   *config.Config
	Store    store.Store
	Accounts *accounts.Service
	Rooms    *room.Service
	Sync     *syncer.Service
	// SlidingSync serves simplified sliding sync (MSC4186); nil: off.
	SlidingSync *slidingsync.Service

	Profiles    *profile.Service
	AccountData *accountdata.Service
	Typing      *typing.Service
	Receipts    *receipts.Service
	Presence    *presence.Service
	Keys        *keys.Service
	Push        *push.Service
	// Federation joins rooms this server is not in through other servers;
	// nil when federation is off.
	Federation *federation.Service
	// Notices sends server notices; nil when they are off.
	Notices *notices.Service
	// ThreadSubs keeps thread subscriptions (MSC4306); nil: off.
	ThreadSubs *threadsubs.Service
	// Threepids: e-mail addresses and the identity endpoints (threepid.go).
	Threepids *threepid.Service
	// SSO is single sign-on (sso.go); nil when oidc_issuer is unset.
	SSO *sso.Service
	// Validity is account expiry (validity.go); nil when
	// external_account_validity is off.
	Validity *validity.Service
}

// API is the Client-Server API.
type API struct {
	Deps
	maxBody int64
	limits  *authLimits // auth.go: /login and /register rate limits
	// limits.go: per-user limits on the expensive endpoints
	userLimits *userLimits
	syncs      syncSlots // sync.go: concurrent /sync per device
	filters    syncfilter.Cache
	mailLimit  *ratelimit.Limiter // threepid.go: validation mails per address
}

// New returns the API.
func New(d Deps) *API {
	a := &API{Deps: d, maxBody: d.Config.MaxRequestBytes}
	if d.Config.RateLimits {
		a.userLimits = newUserLimits(d.Config)
	}
	return a
}

// Mux is what routes are registered on (server.Mux satisfies it).
type Mux interface {
	Handle(pattern string, h http.Handler)
	HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request))
}

// Register adds every Client-Server endpoint to mux.
func (a *API) Register(mux Mux) {
	a.registerDiscovery(mux)
	a.registerAccounts(mux)
	a.registerRooms(mux)
	a.registerSync(mux)
	a.registerSlidingSync(mux)
	a.registerProfile(mux)
	a.registerAccountData(mux)
	a.registerFilter(mux)
	a.registerTyping(mux)
	a.registerReceipts(mux)
	a.registerPresence(mux)
	a.registerKeys(mux)
	a.registerRoomsRead(mux)
	a.registerHierarchy(mux)
	a.registerPush(mux)
	a.registerSearch(mux)
	a.registerNotices(mux)
	a.registerThreadSubscriptions(mux)
	a.registerSSO(mux)
	a.registerUIAFallback(mux)
	a.registerValidity(mux)
	a.registerThreepids(mux)
}

type sessionKey struct{}

// authed wraps a handler that needs an access token.
func (a *API) authed(h func(w http.ResponseWriter, r *http.Request, s *store.Session)) http.HandlerFunc {
	return a.authedVia(h, false)
}

// authedShallow is authed for long-polls (/sync): the token lookup runs on
// a goroutine of its own, so the deep stack the SQLite driver grows is not
// kept by a request that then waits for minutes (see sync.buildApart).
func (a *API) authedShallow(h func(w http.ResponseWriter, r *http.Request, s *store.Session)) http.HandlerFunc {
	return a.authedVia(h, true)
}

func (a *API) authedVia(h func(w http.ResponseWriter, r *http.Request, s *store.Session), apart bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var sess *store.Session
		var err error
		if apart {
			done := make(chan struct{})
			go func() {
				defer close(done)
				defer func() {
					// The request's panic recovery does not reach here.
					if p := recover(); p != nil {
						err = fmt.Errorf("panic authenticating: %v\n%s", p, debug.Stack())
					}
				}()
				sess, err = a.Accounts.Authenticate(r.Context(), accessToken(r))
			}()
			<-done
		} else {
			sess, err = a.Accounts.Authenticate(r.Context(), accessToken(r))
		}
		if err != nil {
			jsonhttp.Error(w, r, err)
			return
		}
		a.Accounts.Seen(sess.UserID, sess.DeviceID, clientIP(r))
		// A read of a room sees what any process acknowledged before it (a
		// no-op with one process; /sync reads up to what its process has
		// heard by design, and writes are checked against the room's head).
		if r.Method == http.MethodGet && r.PathValue("roomId") != "" {
			if err := a.Rooms.Fresh(r.Context()); err != nil {
				jsonhttp.Error(w, r, err)
				return
			}
		}
		// Writes count as activity for presence (Synapse: sending events
		// bumps the user's last-active time); the long-polls (/sync, sliding
		// sync's POSTs) handle set_presence themselves.
		if a.Presence != nil && r.Method != http.MethodGet && !apart {
			a.Presence.Touch(sess.UserID)
		}
		h(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, sess)), sess)
	}
}

// accessToken reads the token from the Authorization header or, deprecated
// but still allowed by the spec, the access_token query parameter.
func accessToken(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if t, ok := strings.CutPrefix(h, "Bearer "); ok {
			return strings.TrimSpace(t)
		}
		return ""
	}
	return r.URL.Query().Get("access_token")
}

// handle registers pattern under both the v3 and r0 prefixes when asked:
// some clients still call r0 paths.
func handle(mux Mux, method, path string, h http.HandlerFunc) {
	mux.HandleFunc(method+" /_matrix/client/v3"+path, h)
	mux.HandleFunc(method+" /_matrix/client/r0"+path, h)
}
