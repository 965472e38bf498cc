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

// maxPublicRoomsLimit caps one page of the room directory.
const maxPublicRoomsLimit = 500

type publicRoomsBody struct {
	Limit  *int   `json:"limit"`
	Since  string `json:"since"`
	Filter *struct {
		GenericSearchTerm string    `json:"generic_search_term"`
		RoomTypes         []*string `json:"room_types"`
	} `json:"filter"`
	IncludeAllNetworks   bool   `json:"include_all_networks"`
	ThirdPartyInstanceID string `json:"third_party_instance_id"`
}

// getPublicRooms needs no access token (spec).
func (a *API) getPublicRooms(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var body publicRoomsBody
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil {
			jsonhttp.Error(w, r, matrix.InvalidParam("limit must be an integer"))
			return
		}
		body.Limit = &n
	}
	body.Since = q.Get("since")
	a.publicRooms(w, r, &body)
}

func (a *API) postPublicRooms(w http.ResponseWriter, r *http.Request, s *store.Session) {
	var body publicRoomsBody
	if err := jsonhttp.Read(r, a.maxBody, &body); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	a.publicRooms(w, r, &body)
}

// publicRooms serves both forms. Pagination tokens are "o<offset>" into
// the list ordered by joined members.
func (a *API) publicRooms(w http.ResponseWriter, r *http.Request, body *publicRoomsBody) {
	// Other servers' directories need federation, which this server does
	// not speak yet; it answers as for an unknown server.
	if srv := r.URL.Query().Get("server"); srv != "" && srv != a.Rooms.ServerName() {
		jsonhttp.Error(w, r, matrix.NotFound("Cannot fetch the room directory of %s", srv))
		return
	}
	q := room.PublicRoomsQuery{Limit: maxPublicRoomsLimit}
	if body.Limit != nil {
		if *body.Limit < 0 {
			jsonhttp.Error(w, r, matrix.InvalidParam("limit must not be negative"))
			return
		}
		if *body.Limit > 0 {
			q.Limit = min(*body.Limit, maxPublicRoomsLimit)
		}
	}
	if body.Since != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(body.Since, "o"))
		if !strings.HasPrefix(body.Since, "o") || err != nil || n < 0 {
			jsonhttp.Error(w, r, matrix.InvalidParam("Invalid since token"))
			return
		}
		q.Offset = n
	}
	if f := body.Filter; f != nil {
		if len(f.RoomTypes) > maxFilterList {
			jsonhttp.Error(w, r, matrix.InvalidParam("room_types is limited to %d entries", maxFilterList))
			return
		}
		q.SearchTerm = f.GenericSearchTerm
		if f.RoomTypes != nil {
			q.RoomTypes = []string{}
			for _, t := range f.RoomTypes {
				if t == nil {
					q.RoomTypes = append(q.RoomTypes, "")
				} else {
					q.RoomTypes = append(q.RoomTypes, *t)
				}
			}
		}
	}
	page, err := a.Rooms.PublicRooms(r.Context(), q)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	resp := map[string]any{"chunk": page.Rooms, "total_room_count_estimate": page.Total}
	if end := q.Offset + len(page.Rooms); end < page.Total {
		resp["next_batch"] = "o" + strconv.Itoa(end)
	}
	if q.Offset > 0 {
		resp["prev_batch"] = "o" + strconv.Itoa(max(0, q.Offset-q.Limit))
	}
	jsonhttp.OK(w, resp)
}
