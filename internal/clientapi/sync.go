package clientapi

import (
	"net/http"
	"strconv"
	sync2 "sync"
	"time"

	"conclave/internal/jsonhttp"
	"conclave/internal/matrix"
	"conclave/internal/presence"
	"conclave/internal/store"
	"conclave/internal/syncer"
)

func (a *API) registerSync(mux Mux) {
	handle(mux, "GET", "/sync", a.authedShallow(a.sync))
}

// syncSlots counts the /sync requests each device has running. A client
// has no reason to run more than one; a few are allowed for reconnects that
// overlap a dying long-poll. Beyond max_syncs_per_device the request is
// refused with 429 M_LIMIT_EXCEEDED, so one token cannot pin unbounded
// goroutines and notifier registrations.
type syncSlots struct {
	mu sync2.Mutex
	n  map[string]int
}

func (s *syncSlots) acquire(key string, max int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == nil {
		s.n = map[string]int{}
	}
	if s.n[key] >= max {
		return false
	}
	s.n[key]++
	return true
}

func (s *syncSlots) release(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n[key]--; s.n[key] <= 0 {
		delete(s.n, key)
	}
}

// syncRetryMS is the retry_after_ms of a refused concurrent /sync.
const syncRetryMS = 1000

func (a *API) sync(w http.ResponseWriter, r *http.Request, s *store.Session) {
	key := s.UserID + "\x00" + s.DeviceID
	if !a.syncs.acquire(key, max(a.Config.MaxSyncsPerDevice, 1)) {
		jsonhttp.Error(w, r, matrix.LimitExceeded(syncRetryMS))
		return
	}
	defer a.syncs.release(key)
	q := r.URL.Query()
	req := &syncer.Request{UserID: s.UserID, DeviceID: s.DeviceID}
	if since := q.Get("since"); since != "" {
		t, ok := syncer.ParseToken(since)
		if !ok {
			jsonhttp.Error(w, r, matrix.InvalidParam("Invalid since token"))
			return
		}
		req.Since = &t
	}
	if t := q.Get("timeout"); t != "" {
		ms, err := strconv.ParseInt(t, 10, 64)
		if err != nil || ms < 0 {
			jsonhttp.Error(w, r, matrix.InvalidParam("timeout must be a non-negative integer"))
			return
		}
		req.Timeout = time.Duration(min(ms, int64(syncer.MaxTimeout/time.Millisecond))) * time.Millisecond
	}
	switch q.Get("full_state") {
	case "", "false":
	case "true":
		req.FullState = true
	default:
		jsonhttp.Error(w, r, matrix.InvalidParam("full_state must be true or false"))
		return
	}
	filter, err := a.filters.FromQuery(r.Context(), q.Get("filter"), s.UserID, a.Store.GetFilter)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	// An initial or full_state sync reads every joined room's state: the
	// costliest request a client can repeat at will.
	if req.Since == nil || req.FullState {
		if err := a.limitUser(s, fullSyncLimit); err != nil {
			jsonhttp.Error(w, r, err)
			return
		}
	}
	req.Filter = filter
	// Syncing marks the user online unless the client says otherwise.
	a.syncPresence(s.UserID, q.Get("set_presence"))
	resp, err := a.Sync.Sync(r.Context(), req)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, resp)
}

// syncPresence applies a sync request's set_presence: online unless the
// client says otherwise.
func (a *API) syncPresence(userID, setPresence string) {
	if a.Presence == nil {
		return
	}
	switch setPresence {
	case "offline":
	case "unavailable":
		// Only a change is recorded: setting the same state on every
		// long-poll would wake every room member each time.
		if a.Presence.Get(userID).Presence != presence.Unavailable {
			a.Presence.Set(userID, presence.Unavailable, nil)
		}
	default:
		a.Presence.Touch(userID)
	}
}
