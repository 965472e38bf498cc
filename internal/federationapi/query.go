package federationapi

import (
	"errors"
	"net/http"

	"conclave/internal/jsonhttp"
	"conclave/internal/matrix"
	"conclave/internal/store"
)

// Queries other servers make of this one (Server-Server API, "Querying for
// information"): which room an alias of ours names, and our users' profiles.

func (a *API) registerQueries(mux Mux) {
	if a.Store == nil || a.Rooms == nil {
		return
	}
	a.HandleSigned(mux, "GET /_matrix/federation/v1/query/directory", a.queryDirectory)
	a.HandleSigned(mux, "GET /_matrix/federation/v1/query/profile", a.queryProfile)
}

// queryDirectory: GET /_matrix/federation/v1/query/directory?room_alias=.
func (a *API) queryDirectory(w http.ResponseWriter, r *http.Request) {
	alias := r.URL.Query().Get("room_alias")
	if !matrix.ValidAlias(alias) {
		jsonhttp.Error(w, r, matrix.InvalidParam("Invalid room alias"))
		return
	}
	if matrix.ServerOf(alias) != a.ServerName {
		jsonhttp.Error(w, r, matrix.NotFound("Room alias %s is not on this server", alias))
		return
	}
	roomID, _, err := a.Store.GetAlias(r.Context(), alias)
	if errors.Is(err, store.ErrNotFound) {
		jsonhttp.Error(w, r, matrix.NotFound("Room alias %s not found", alias))
		return
	}
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	servers, err := a.Rooms.ServersInRoom(r.Context(), roomID)
	if err != nil {
		servers = nil
	}
	// This server first: it knows the alias, so it is in the room or was.
	out := []string{a.ServerName}
	for _, s := range servers {
		if s != a.ServerName {
			out = append(out, s)
		}
	}
	jsonhttp.OK(w, map[string]any{"room_id": roomID, "servers": out})
}

// queryProfile: GET /_matrix/federation/v1/query/profile?user_id=&field=.
func (a *API) queryProfile(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	userID, field := q.Get("user_id"), q.Get("field")
	if !matrix.ValidUserID(userID) {
		jsonhttp.Error(w, r, matrix.InvalidParam("Invalid user ID"))
		return
	}
	if field != "" && field != "displayname" && field != "avatar_url" {
		jsonhttp.Error(w, r, matrix.InvalidParam("Unknown profile field %q", field))
		return
	}
	if matrix.ServerOf(userID) != a.ServerName {
		jsonhttp.Error(w, r, matrix.NotFound("User %s is not on this server", userID))
		return
	}
	if _, err := a.Store.GetUser(r.Context(), userID); err != nil {
		jsonhttp.Error(w, r, matrix.NotFound("Profile not found"))
		return
	}
	out := map[string]string{}
	p, err := a.Store.GetProfile(r.Context(), userID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		jsonhttp.Error(w, r, err)
		return
	}
	if p != nil {
		if p.DisplayName != "" && field != "avatar_url" {
			out["displayname"] = p.DisplayName
		}
		if p.AvatarURL != "" && field != "displayname" {
			out["avatar_url"] = p.AvatarURL
		}
	}
	jsonhttp.OK(w, out)
}
