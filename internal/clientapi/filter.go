package clientapi

import (
	"errors"
	"net/http"
	"strconv"

	"conclave/internal/jsonhttp"
	"conclave/internal/matrix"
	"conclave/internal/store"
	"conclave/internal/syncfilter"
)

// Filter endpoints (spec: Client-Server API, "Filtering").
func (a *API) registerFilter(mux Mux) {
	handle(mux, "POST", "/user/{userId}/filter", a.authed(a.postFilter))
	handle(mux, "GET", "/user/{userId}/filter/{filterId}", a.authed(a.getFilter))
}

func checkOwnUser(s *store.Session, target, what string) error {
	if !matrix.ValidUserID(target) {
		return matrix.InvalidParam("Invalid user ID")
	}
	if s.UserID != target {
		return matrix.Forbidden("Cannot %s for other users", what)
	}
	return nil
}

func (a *API) postFilter(w http.ResponseWriter, r *http.Request, s *store.Session) {
	if err := checkOwnUser(s, r.PathValue("userId"), "create filters"); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	body, err := jsonhttp.ReadBody(r, a.maxBody)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	// Validate, then store the canonical encoding: what GET returns is what
	// the server understood.
	f, err := syncfilter.Parse(body)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	canon, err := f.MarshalJSON()
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	id, err := a.Store.PutFilter(r.Context(), s.UserID, canon)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]string{"filter_id": id})
}

func (a *API) getFilter(w http.ResponseWriter, r *http.Request, s *store.Session) {
	if err := checkOwnUser(s, r.PathValue("userId"), "get filters"); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	id := r.PathValue("filterId")
	if n, err := strconv.ParseInt(id, 10, 64); err != nil || n < 0 || strconv.FormatInt(n, 10) != id {
		jsonhttp.Error(w, r, matrix.InvalidParam("Invalid filter ID"))
		return
	}
	raw, err := a.Store.GetFilter(r.Context(), s.UserID, id)
	if errors.Is(err, store.ErrNotFound) {
		err = matrix.NotFound("No such filter")
	}
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, raw)
}
