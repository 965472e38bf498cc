package clientapi

import (
	"net/http"
	"time"

	"conclave/internal/jsonhttp"
	"conclave/internal/matrix"
	"conclave/internal/store"
)

// Typing notifications (spec: Client-Server API, "Typing Notifications").
func (a *API) registerTyping(mux Mux) {
	handle(mux, "PUT", "/rooms/{roomId}/typing/{userId}", a.authed(a.putTyping))
}

func (a *API) putTyping(w http.ResponseWriter, r *http.Request, s *store.Session) {
	if err := checkOwnUser(s, r.PathValue("userId"), "send typing notifications"); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	var body struct {
		Typing  *bool    `json:"typing"`
		Timeout *float64 `json:"timeout"`
	}
	if err := jsonhttp.Read(r, a.maxBody, &body); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	if body.Typing == nil {
		jsonhttp.Error(w, r, matrix.MissingParam("Missing typing"))
		return
	}
	var timeout time.Duration
	if body.Timeout != nil {
		if *body.Timeout < 0 {
			jsonhttp.Error(w, r, matrix.InvalidParam("timeout must not be negative"))
			return
		}
		// Capped by the service; clamp here so the conversion cannot overflow.
		timeout = time.Duration(min(*body.Timeout, 1e9)) * time.Millisecond
	}
	if err := a.Typing.Set(r.Context(), r.PathValue("roomId"), s.UserID, *body.Typing, timeout); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.Empty(w)
}
