package clientapi

import (
	"net/http"

	"conclave/internal/jsonhttp"
	"conclave/internal/matrix"
	"conclave/internal/room"
	"conclave/internal/store"
)

func (a *API) putAlias(w http.ResponseWriter, r *http.Request, s *store.Session) {
	var body struct {
		RoomID *string `json:"room_id"`
	}
	if err := jsonhttp.Read(r, a.maxBody, &body); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	if body.RoomID == nil {
		jsonhttp.Error(w, r, matrix.MissingParam("room_id is required"))
		return
	}
	if err := a.Rooms.CreateAlias(r.Context(), r.PathValue("roomAlias"), *body.RoomID, s.UserID, s.IsAdmin); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.Empty(w)
}

// getAlias resolves an alias; the spec requires no access token.
func (a *API) getAlias(w http.ResponseWriter, r *http.Request) {
	alias := r.PathValue("roomAlias")
	var roomID string
	var servers []string
	var err error
	if a.Federation != nil && matrix.ValidAlias(alias) && matrix.ServerOf(alias) != a.Config.ServerName {
		// Another server's alias: asked of that server (/query/directory).
		roomID, servers, err = a.Federation.ResolveAlias(r.Context(), alias)
	} else {
		roomID, servers, err = a.Rooms.ResolveAlias(r.Context(), alias)
	}
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]any{"room_id": roomID, "servers": servers})
}

func (a *API) deleteAlias(w http.ResponseWriter, r *http.Request, s *store.Session) {
	if err := a.Rooms.DeleteAlias(r.Context(), r.PathValue("roomAlias"), s.UserID, s.DeviceID, s.IsAdmin); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.Empty(w)
}

func (a *API) roomAliases(w http.ResponseWriter, r *http.Request, s *store.Session) {
	roomID, err := roomIDParam(r)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	aliases, err := a.Rooms.LocalAliases(r.Context(), roomID, s.UserID)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]any{"aliases": aliases})
}

// getDirectoryVisibility needs no access token (spec).
func (a *API) getDirectoryVisibility(w http.ResponseWriter, r *http.Request) {
	roomID, err := roomIDParam(r)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	v, err := a.Rooms.DirectoryVisibility(r.Context(), roomID)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]string{"visibility": v})
}

func (a *API) putDirectoryVisibility(w http.ResponseWriter, r *http.Request, s *store.Session) {
	roomID, err := roomIDParam(r)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	var body struct {
		Visibility *string `json:"visibility"`
	}
	if err := jsonhttp.Read(r, a.maxBody, &body); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	// Synapse treats a missing visibility as "public".
	v := "public"
	if body.Visibility != nil {
		v = *body.Visibility
	}
	if err := a.Rooms.SetDirectoryVisibility(r.Context(), roomID, s.UserID, s.IsAdmin, s.IsGuest, v); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.Empty(w)
}

// getPublicRooms needs no access token (spec).
func (a *API) getPublicRooms(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req, err := room.ParsePublicRoomsQuery(q.Get("limit"), q.Get("since"), q.Get("include_all_networks"), q.Get("third_party_instance_id"))
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	a.publicRooms(w, r, req)
}

func (a *API) postPublicRooms(w http.ResponseWriter, r *http.Request, s *store.Session) {
	var req room.PublicRoomsRequest
	if err := jsonhttp.Read(r, a.maxBody, &req); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	a.publicRooms(w, r, &req)
}

// publicRooms serves both forms: this server's directory, or, with
// server=, another server's, asked over federation
// (GET/POST /_matrix/federation/v1/publicRooms).
func (a *API) publicRooms(w http.ResponseWriter, r *http.Request, req *room.PublicRoomsRequest) {
	if srv := r.URL.Query().Get("server"); srv != "" && srv != a.Rooms.ServerName() {
		if !matrix.ValidServerName(srv) {
			jsonhttp.Error(w, r, matrix.InvalidParam("Invalid server name %q", srv))
			return
		}
		if a.Federation == nil {
			jsonhttp.Error(w, r, matrix.NotFound("Cannot fetch the room directory of %s", srv))
			return
		}
		resp, err := a.Federation.PublicRooms(r.Context(), srv, req)
		if err != nil {
			jsonhttp.Error(w, r, err)
			return
		}
		jsonhttp.OK(w, resp)
		return
	}
	resp, err := a.Rooms.PublicRoomsFor(r.Context(), req)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, resp)
}
