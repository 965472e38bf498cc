package clientapi

import (
	"net/http"

	"conclave/internal/config"
	"conclave/internal/jsonhttp"
	"conclave/internal/ratelimit"
	"conclave/internal/store"
)

// userLimits are the per-user token buckets on the endpoints whose cost a
// logged-in user could otherwise multiply at will (nil when rate limits are
// off). A refused request gets 429 M_LIMIT_EXCEEDED with retry_after_ms
// (Client-Server API, "Rate limiting"). Server admins are exempt, as in
// Synapse, so an operator can clean up after an abuser at full speed.
type userLimits struct {
	events     *ratelimit.Limiter // send, state, redact: one PDU each
	createRoom *ratelimit.Limiter // a room and its initial state
	invite     *ratelimit.Limiter
	search     *ratelimit.Limiter // full-text search over every joined room
	directory  *ratelimit.Limiter // user directory search
	fullSync   *ratelimit.Limiter // initial or full_state /sync: every joined room's state
}

func newUserLimits(c *config.Config) *userLimits {
	return &userLimits{
		events:     ratelimit.New(c.EventRatePerSecond, c.EventRateBurst, 0),
		createRoom: ratelimit.New(c.CreateRoomRatePerSecond, c.CreateRoomRateBurst, 0),
		invite:     ratelimit.New(c.InviteRatePerSecond, c.InviteRateBurst, 0),
		search:     ratelimit.New(c.SearchRatePerSecond, c.SearchRateBurst, 0),
		directory:  ratelimit.New(c.UserDirectoryRatePerSecond, c.UserDirectoryRateBurst, 0),
		fullSync:   ratelimit.New(c.FullSyncRatePerSecond, c.FullSyncRateBurst, 0),
	}
}

// limitUser takes a token from the caller's bucket in the limiter pick
// chooses; nil when limits are off or the caller is a server admin.
func (a *API) limitUser(s *store.Session, pick func(*userLimits) *ratelimit.Limiter) error {
	if a.userLimits == nil || s.IsAdmin {
		return nil
	}
	return limited(pick(a.userLimits), s.UserID, true)
}

// perUser wraps an authenticated handler with the per-user limit pick
// chooses; the token is taken before the request is read.
func (a *API) perUser(pick func(*userLimits) *ratelimit.Limiter, h func(http.ResponseWriter, *http.Request, *store.Session)) func(http.ResponseWriter, *http.Request, *store.Session) {
	return func(w http.ResponseWriter, r *http.Request, s *store.Session) {
		if err := a.limitUser(s, pick); err != nil {
			jsonhttp.Error(w, r, err)
			return
		}
		h(w, r, s)
	}
}

// The limiters, by endpoint.
func eventLimit(l *userLimits) *ratelimit.Limiter      { return l.events }
func createRoomLimit(l *userLimits) *ratelimit.Limiter { return l.createRoom }
func inviteLimit(l *userLimits) *ratelimit.Limiter     { return l.invite }
func searchLimit(l *userLimits) *ratelimit.Limiter     { return l.search }
func directoryLimit(l *userLimits) *ratelimit.Limiter  { return l.directory }
func fullSyncLimit(l *userLimits) *ratelimit.Limiter   { return l.fullSync }
