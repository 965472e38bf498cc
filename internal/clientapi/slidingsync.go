package clientapi

import (
	"net/http"
	"strconv"
	"time"

	"conclave/internal/jsonhttp"
	"conclave/internal/matrix"
	"conclave/internal/slidingsync"
	"conclave/internal/store"
)

// Simplified sliding sync (MSC4186) at the unstable path clients use today
// (matrix-rust-sdk / Element X, matrix-js-sdk ≥ 38), in Synapse's shape:
// pos and timeout are query parameters, the rest is the body.
const simplifiedSlidingSync = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"

func (a *API) registerSlidingSync(mux Mux) {
	if a.SlidingSync == nil {
		return
	}
	mux.HandleFunc("POST "+simplifiedSlidingSync, a.authedShallow(a.slidingSync))
	mux.HandleFunc("POST "+stableSlidingSync, a.authedShallow(a.slidingSyncStable))
}

// The stable encoding of MSC4186 (as accepted): pos, timeout and
// set_presence in the body, and a few fields shaped differently
// (slidingsync/stable.go); the same engine and connections.
const stableSlidingSync = "/_matrix/client/v4/sync"

func (a *API) slidingSyncStable(w http.ResponseWriter, r *http.Request, s *store.Session) {
	key := s.UserID + "\x00" + s.DeviceID
	if !a.syncs.acquire(key, max(a.Config.MaxSyncsPerDevice, 1)) {
		jsonhttp.Error(w, r, matrix.LimitExceeded(syncRetryMS))
		return
	}
	defer a.syncs.release(key)
	// Decoded on a goroutine of its own (see slidingSync).
	var req *slidingsync.StableRequest
	var body []byte
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		if body, err = jsonhttp.ReadBody(r, a.maxBody); err == nil {
			req = new(slidingsync.StableRequest)
			err = jsonhttp.Decode(body, req)
		}
	}()
	<-done
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	setPresence, err := req.Presence()
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	if req.Pos == "" {
		if err := a.limitUser(s, fullSyncLimit); err != nil {
			jsonhttp.Error(w, r, err)
			return
		}
	}
	a.syncPresence(s.UserID, setPresence)
	resp, err := a.SlidingSync.SyncStable(r.Context(), s.UserID, s.DeviceID, req, body)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, resp)
}

func (a *API) slidingSync(w http.ResponseWriter, r *http.Request, s *store.Session) {
	key := s.UserID + "\x00" + s.DeviceID
	// The same bound as /sync on requests a device may have running (two
	// connections, and a long-poll being replaced, fit in the default).
	if !a.syncs.acquire(key, max(a.Config.MaxSyncsPerDevice, 1)) {
		jsonhttp.Error(w, r, matrix.LimitExceeded(syncRetryMS))
		return
	}
	defer a.syncs.release(key)
	q := r.URL.Query()
	var timeout time.Duration
	if t := q.Get("timeout"); t != "" {
		ms, err := strconv.ParseInt(t, 10, 64)
		if err != nil || ms < 0 {
			jsonhttp.Error(w, r, matrix.InvalidParam("timeout must be a non-negative integer"))
			return
		}
		timeout = time.Duration(min(ms, int64(slidingsync.MaxTimeout/time.Millisecond))) * time.Millisecond
	}
	// Decoded on a goroutine of its own: the decoder's deep frames would
	// otherwise stay on the stack of a long-poll that then waits (see
	// authedShallow).
	var req slidingsync.Request
	var body []byte
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		if body, err = jsonhttp.ReadBody(r, a.maxBody); err == nil {
			err = jsonhttp.Decode(body, &req)
		}
	}()
	<-done
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	pos := q.Get("pos")
	if pos == "" {
		// A new connection reads the windows' rooms in full: limited like
		// an initial /sync.
		if err := a.limitUser(s, fullSyncLimit); err != nil {
			jsonhttp.Error(w, r, err)
			return
		}
	}
	if a.Presence != nil {
		a.Presence.Touch(s.UserID)
	}
	resp, err := a.SlidingSync.Sync(r.Context(), s.UserID, s.DeviceID, pos, timeout, &req, body)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, resp)
}
