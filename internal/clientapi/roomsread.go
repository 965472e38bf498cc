package clientapi

import (
	"net/http"
	"strconv"

	"conclave/internal/matrix"
)

// registerRoomsRead adds the alias, room directory, relations, threads,
// context, upgrade and timestamp endpoints.
func (a *API) registerRoomsRead(mux Mux) {
	handle(mux, "PUT", "/directory/room/{roomAlias}", a.authed(a.putAlias))
	handle(mux, "GET", "/directory/room/{roomAlias}", a.getAlias)
	handle(mux, "DELETE", "/directory/room/{roomAlias}", a.authed(a.deleteAlias))
	handle(mux, "GET", "/rooms/{roomId}/aliases", a.authed(a.roomAliases))
	handle(mux, "GET", "/directory/list/room/{roomId}", a.getDirectoryVisibility)
	handle(mux, "PUT", "/directory/list/room/{roomId}", a.authed(a.putDirectoryVisibility))
	handle(mux, "GET", "/publicRooms", a.getPublicRooms)
	handle(mux, "POST", "/publicRooms", a.authed(a.postPublicRooms))
	handle(mux, "GET", "/rooms/{roomId}/context/{eventId}", a.authed(a.eventContext))
	handle(mux, "POST", "/rooms/{roomId}/upgrade", a.authed(a.perUser(createRoomLimit, a.upgradeRoom)))
	handleV1(mux, "GET", "/rooms/{roomId}/relations/{eventId}", a.authed(a.relations))
	handleV1(mux, "GET", "/rooms/{roomId}/relations/{eventId}/{relType}", a.authed(a.relations))
	handleV1(mux, "GET", "/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}", a.authed(a.relations))
	handleV1(mux, "GET", "/rooms/{roomId}/threads", a.authed(a.threads))
	handleV1(mux, "GET", "/rooms/{roomId}/timestamp_to_event", a.authed(a.timestampToEvent))
}

// handleV1 registers a path under /_matrix/client/v1 (relations, threads
// and timestamp_to_event exist only there).
func handleV1(mux Mux, method, path string, h http.HandlerFunc) {
	mux.HandleFunc(method+" /_matrix/client/v1"+path, h)
}

// queryLimit reads an optional non-negative "limit" query parameter,
// capped at max.
func queryLimit(r *http.Request, def, max int) (int, error) {
	l := r.URL.Query().Get("limit")
	if l == "" {
		return def, nil
	}
	n, err := strconv.Atoi(l)
	if err != nil || n < 0 {
		return 0, matrix.InvalidParam("limit must be a non-negative integer")
	}
	return min(n, max), nil
}

// queryToken reads an optional pagination token parameter: -1 if absent.
func queryToken(r *http.Request, name string) (int64, error) {
	t := r.URL.Query().Get(name)
	if t == "" {
		return -1, nil
	}
	p, ok := parsePosToken(t)
	if !ok {
		return 0, matrix.InvalidParam("Invalid %s token", name)
	}
	return p, nil
}
