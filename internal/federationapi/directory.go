package federationapi

import (
	"net/http"

	"conclave/internal/jsonhttp"
	"conclave/internal/room"
)

// The public room directory for other servers (Server-Server API, "Public
// Room Directory"): the same list, parameters and answer as our clients'
// /publicRooms (room.Service.PublicRoomsFor).

// maxPublicRoomsBody bounds a POST body: a filter and a few fields.
const maxPublicRoomsBody = 64 << 10

func (a *API) registerDirectory(mux Mux) {
	if a.Rooms == nil {
		return
	}
	a.HandleSigned(mux, "GET /_matrix/federation/v1/publicRooms", a.getPublicRooms)
	a.HandleSigned(mux, "POST /_matrix/federation/v1/publicRooms", a.postPublicRooms)
}

func (a *API) getPublicRooms(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req, err := room.ParsePublicRoomsQuery(q.Get("limit"), q.Get("since"), q.Get("include_all_networks"), q.Get("third_party_instance_id"))
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	a.servePublicRooms(w, r, req)
}

func (a *API) postPublicRooms(w http.ResponseWriter, r *http.Request) {
	var req room.PublicRoomsRequest
	if err := jsonhttp.Read(r, maxPublicRoomsBody, &req); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	a.servePublicRooms(w, r, &req)
}

func (a *API) servePublicRooms(w http.ResponseWriter, r *http.Request, req *room.PublicRoomsRequest) {
	resp, err := a.Rooms.PublicRoomsFor(r.Context(), req)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, resp)
}
