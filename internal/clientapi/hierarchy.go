package clientapi

import (
	"net/http"
	"strconv"
	"strings"

	"conclave/internal/jsonhttp"
	"conclave/internal/matrix"
	"conclave/internal/room"
	"conclave/internal/store"
)

// Space hierarchies and room summaries over the rooms this server knows.
func (a *API) registerHierarchy(mux Mux) {
	handleV1(mux, "GET", "/rooms/{roomId}/hierarchy", a.authed(a.hierarchy))
	handleV1(mux, "GET", "/room_summary/{roomIdOrAlias}", a.roomSummary)
	// MSC3266's unstable paths, which clients of servers before v1.15 use
	// (Synapse serves both).
	mux.HandleFunc("GET /_matrix/client/unstable/im.nheko.summary/rooms/{roomIdOrAlias}/summary", a.roomSummary)
	mux.HandleFunc("GET /_matrix/client/unstable/im.nheko.summary/summary/{roomIdOrAlias}", a.roomSummary)
}

// maxVia bounds the servers a room summary is asked of.
const maxVia = 10

// Page sizes of GET /hierarchy (Synapse's default and cap).
const (
	defaultHierarchyLimit = 50
	maxHierarchyLimit     = 50
)

// hierarchy serves GET /_matrix/client/v1/rooms/{roomId}/hierarchy
// (Client-Server API, "Spaces"): limit and max_depth are non-negative
// integers, suggested_only true or false.
func (a *API) hierarchy(w http.ResponseWriter, r *http.Request, s *store.Session) {
	roomID, err := roomIDParam(r)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	q := r.URL.Query()
	hq := room.HierarchyQuery{Limit: defaultHierarchyLimit, MaxDepth: -1, From: q.Get("from")}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			jsonhttp.Error(w, r, matrix.InvalidParam("limit must be a positive integer"))
			return
		}
		hq.Limit = min(n, maxHierarchyLimit)
	}
	if v := q.Get("max_depth"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			jsonhttp.Error(w, r, matrix.InvalidParam("max_depth must be a non-negative integer"))
			return
		}
		hq.MaxDepth = n
	}
	switch q.Get("suggested_only") {
	case "", "false":
	case "true":
		hq.SuggestedOnly = true
	default:
		jsonhttp.Error(w, r, matrix.InvalidParam("suggested_only must be true or false"))
		return
	}
	page, err := a.Rooms.Hierarchy(r.Context(), s.UserID, roomID, hq)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	out := map[string]any{"rooms": page.Rooms}
	if page.NextBatch != "" {
		out["next_batch"] = page.NextBatch
	}
	jsonhttp.OK(w, out)
}

// roomSummary serves GET /_matrix/client/v1/room_summary/{roomIdOrAlias}
// (Client-Server API v1.15, "Room summaries"); authentication is optional:
// an anonymous requester sees rooms anyone may join or peek into.
func (a *API) roomSummary(w http.ResponseWriter, r *http.Request) {
	userID := ""
	if tok := accessToken(r); tok != "" || r.Header.Get("Authorization") != "" {
		sess, err := a.Accounts.Authenticate(r.Context(), tok)
		if err != nil {
			jsonhttp.Error(w, r, err)
			return
		}
		userID = sess.UserID
	}
	id := r.PathValue("roomIdOrAlias")
	via := r.URL.Query()["via"]
	if len(via) > maxVia {
		via = via[:maxVia]
	}
	if strings.HasPrefix(id, "#") {
		var roomID string
		var servers []string
		var err error
		if a.Federation != nil && matrix.ValidAlias(id) && matrix.ServerOf(id) != a.Config.ServerName {
			// Another server's alias: asked of it; its servers are where
			// the room may be asked about.
			roomID, servers, err = a.Federation.ResolveAlias(r.Context(), id)
		} else {
			roomID, servers, err = a.Rooms.ResolveAlias(r.Context(), id)
		}
		if err != nil {
			jsonhttp.Error(w, r, err)
			return
		}
		id = roomID
		via = append(via, servers...)
	} else if !matrix.ValidRoomID(id) {
		jsonhttp.Error(w, r, matrix.InvalidParam("Invalid room ID or alias %q", id))
		return
	}
	sum, membership, err := a.Rooms.RoomSummary(r.Context(), id, userID, via)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	out := struct {
		*room.RoomSummary
		Membership string `json:"membership,omitempty"`
	}{sum, membership}
	jsonhttp.OK(w, out)
}
