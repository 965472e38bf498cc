package clientapi

import (
	"net/http"

	"conclave/internal/accountdata"
	"conclave/internal/jsonhttp"
	"conclave/internal/store"
)

// Account data endpoints (spec: Client-Server API, "Client Config").
func (a *API) registerAccountData(mux Mux) {
	handle(mux, "GET", "/user/{userId}/account_data/{type}", a.authed(a.getAccountData))
	handle(mux, "PUT", "/user/{userId}/account_data/{type}", a.authed(a.putAccountData))
	handle(mux, "GET", "/user/{userId}/rooms/{roomId}/account_data/{type}", a.authed(a.getAccountData))
	handle(mux, "PUT", "/user/{userId}/rooms/{roomId}/account_data/{type}", a.authed(a.putAccountData))
	// Room tags (Client-Server API, "Room Tagging"): m.tag room account data.
	handle(mux, "GET", "/user/{userId}/rooms/{roomId}/tags", a.authed(a.getTags))
	handle(mux, "PUT", "/user/{userId}/rooms/{roomId}/tags/{tag}", a.authed(a.putTag))
	handle(mux, "DELETE", "/user/{userId}/rooms/{roomId}/tags/{tag}", a.authed(a.deleteTag))
}

func (a *API) getTags(w http.ResponseWriter, r *http.Request, s *store.Session) {
	tags, err := a.AccountData.Tags(r.Context(), s.UserID, r.PathValue("userId"), r.PathValue("roomId"))
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]any{"tags": tags})
}

func (a *API) putTag(w http.ResponseWriter, r *http.Request, s *store.Session) {
	// Refuse before reading the body, as for account data.
	if err := accountdata.Check(s.UserID, r.PathValue("userId"), r.PathValue("roomId"), accountdata.TypeTags); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	c, err := jsonhttp.ReadObject(r, accountdata.MaxContentBytes)
	if err == nil {
		err = a.AccountData.SetTag(r.Context(), s.UserID, r.PathValue("userId"), r.PathValue("roomId"), r.PathValue("tag"), c)
	}
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.Empty(w)
}

func (a *API) deleteTag(w http.ResponseWriter, r *http.Request, s *store.Session) {
	if err := a.AccountData.DeleteTag(r.Context(), s.UserID, r.PathValue("userId"), r.PathValue("roomId"), r.PathValue("tag")); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.Empty(w)
}

func (a *API) getAccountData(w http.ResponseWriter, r *http.Request, s *store.Session) {
	c, err := a.AccountData.Get(r.Context(), s.UserID, r.PathValue("userId"), r.PathValue("roomId"), r.PathValue("type"))
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, c)
}

func (a *API) putAccountData(w http.ResponseWriter, r *http.Request, s *store.Session) {
	target, roomID, typ := r.PathValue("userId"), r.PathValue("roomId"), r.PathValue("type")
	// Refuse before reading the body, so a stranger learns nothing from it.
	if err := accountdata.Check(s.UserID, target, roomID, typ); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	c, err := jsonhttp.ReadObject(r, accountdata.MaxContentBytes)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	if err := a.AccountData.Put(r.Context(), s.UserID, target, roomID, typ, c); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.Empty(w)
}
