package clientapi

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"conclave/internal/jsonhttp"
	"conclave/internal/matrix"
	"conclave/internal/store"
	"conclave/internal/sync"
)

func (a *API) registerSync(mux Mux) {
	handle(mux, "GET", "/sync", a.authed(a.sync))
}

func (a *API) sync(w http.ResponseWriter, r *http.Request, s *store.Session) {
	q := r.URL.Query()
	req := &sync.Request{UserID: s.UserID, DeviceID: s.DeviceID}
	if since := q.Get("since"); since != "" {
		t, ok := sync.ParseToken(since)
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
		req.Timeout = time.Duration(min(ms, int64(sync.MaxTimeout/time.Millisecond))) * time.Millisecond
	}
	switch q.Get("full_state") {
	case "", "false":
	case "true":
		req.FullState = true
	default:
		jsonhttp.Error(w, r, matrix.InvalidParam("full_state must be true or false"))
		return
	}
	if f := q.Get("filter"); f != "" {
		var raw []byte
		if strings.HasPrefix(strings.TrimSpace(f), "{") {
			raw = []byte(f)
		} else {
			stored, err := a.Store.GetFilter(r.Context(), s.UserID, f)
			if errors.Is(err, store.ErrNotFound) {
				jsonhttp.Error(w, r, matrix.NotFound("Unknown filter %q", f))
				return
			}
			if err != nil {
				jsonhttp.Error(w, r, err)
				return
			}
			raw = stored
		}
		filter, err := sync.ParseFilter(raw)
		if err != nil {
			jsonhttp.Error(w, r, matrix.BadJSON("Invalid filter: %s", err.Error()))
			return
		}
		req.Filter = filter
	}
	resp, err := a.Sync.Sync(r.Context(), req)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, resp)
}
