package federationapi

import (
	"net/http"

	"conclave/internal/jsonhttp"
	"conclave/internal/matrix"
)

// Spaces for other servers (Server-Server API, "Spaces"): a room and its
// children as the requesting server may see them (room.Service.HierarchyFor).

func (a *API) registerHierarchy(mux Mux) {
	if a.Rooms == nil {
		return
	}
	a.HandleSigned(mux, "GET /_matrix/federation/v1/hierarchy/{roomId}", a.withACL(a.hierarchy))
}

// hierarchy: GET /_matrix/federation/v1/hierarchy/{roomId}?suggested_only=.
func (a *API) hierarchy(w http.ResponseWriter, r *http.Request) {
	roomID := r.PathValue("roomId")
	if !matrix.ValidRoomID(roomID) {
		jsonhttp.Error(w, r, matrix.InvalidParam("Invalid room ID"))
		return
	}
	suggested := false
	switch r.URL.Query().Get("suggested_only") {
	case "", "false":
	case "true":
		suggested = true
	default:
		jsonhttp.Error(w, r, matrix.InvalidParam("suggested_only must be true or false"))
		return
	}
	sp, err := a.Rooms.HierarchyFor(r.Context(), Origin(r.Context()), roomID, suggested)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, sp)
}
