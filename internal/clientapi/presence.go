package clientapi

import (
	"net/http"

	"conclave/internal/jsonhttp"
	"conclave/internal/matrix"
	"conclave/internal/store"
)

// Presence (spec: Client-Server API, "Presence").
func (a *API) registerPresence(mux Mux) {
	handle(mux, "GET", "/presence/{userId}/status", a.authed(a.getPresence))
	handle(mux, "PUT", "/presence/{userId}/status", a.authed(a.putPresence))
}

func (a *API) getPresence(w http.ResponseWriter, r *http.Request, s *store.Session) {
	target := r.PathValue("userId")
	if !matrix.ValidUserID(target) {
		jsonhttp.Error(w, r, matrix.InvalidParam("Invalid user ID"))
		return
	}
	st, err := a.Presence.GetFor(r.Context(), s.UserID, target)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, st)
}

func (a *API) putPresence(w http.ResponseWriter, r *http.Request, s *store.Session) {
	if err := checkOwnUser(s, r.PathValue("userId"), "set presence"); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	var body struct {
		Presence  *string `json:"presence"`
		StatusMsg *string `json:"status_msg"`
	}
	if err := jsonhttp.Read(r, a.maxBody, &body); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	if body.Presence == nil {
		jsonhttp.Error(w, r, matrix.MissingParam("Missing presence"))
		return
	}
	if err := a.Presence.Set(s.UserID, *body.Presence, body.StatusMsg); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.Empty(w)
}
