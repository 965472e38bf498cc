package clientapi

import (
	"math"
	"net/http"
	"slices"
	"strconv"

	"conclave/internal/jsonhttp"
	"conclave/internal/matrix"
	"conclave/internal/room"
	"conclave/internal/store"
)

// Limits for /relations and /threads: Synapse defaults to 5 per page.
const (
	defaultRelationsLimit = 5
	maxRelationsLimit     = 1000
	maxThreadsLimit       = 100
)

func (a *API) relations(w http.ResponseWriter, r *http.Request, s *store.Session) {
	roomID, err := roomIDParam(r)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	q := r.URL.Query()
	req := &room.RelationsRequest{RoomID: roomID, EventID: r.PathValue("eventId"), UserID: s.UserID,
		RelType: r.PathValue("relType"), EventType: r.PathValue("eventType"), Backwards: true}
	switch q.Get("dir") {
	case "", "b":
	case "f":
		req.Backwards = false
	default:
		jsonhttp.Error(w, r, matrix.InvalidParam("dir must be b or f"))
		return
	}
	// recurse (spec v1.10): this server does not follow relations of
	// relations, which the spec allows; it reports the depth it used, 1.
	if v := q.Get("recurse"); v != "" && v != "true" && v != "false" {
		jsonhttp.Error(w, r, matrix.InvalidParam("recurse must be true or false"))
		return
	}
	if req.Limit, err = queryLimit(r, defaultRelationsLimit, maxRelationsLimit); err == nil {
		if req.From, err = queryToken(r, "from"); err == nil {
			req.To, err = queryToken(r, "to")
		}
	}
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	resp := map[string]any{}
	if req.Limit == 0 {
		resp["chunk"] = []any{}
		jsonhttp.OK(w, resp)
		return
	}
	page, err := a.Rooms.Relations(r.Context(), req)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	chunk, err := a.Rooms.ClientEvents(r.Context(), page.Events, s.UserID, s.DeviceID, true)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	resp["chunk"] = chunk
	if page.Next >= 0 {
		resp["next_batch"] = posToken(page.Next)
	}
	if t := q.Get("from"); t != "" {
		resp["prev_batch"] = t
	}
	if q.Get("recurse") != "" {
		resp["recursion_depth"] = 1
	}
	jsonhttp.OK(w, resp)
}

func (a *API) threads(w http.ResponseWriter, r *http.Request, s *store.Session) {
	roomID, err := roomIDParam(r)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	req := &room.ThreadsRequest{RoomID: roomID, UserID: s.UserID}
	switch r.URL.Query().Get("include") {
	case "", "all":
	case "participated":
		req.Participated = true
	default:
		jsonhttp.Error(w, r, matrix.InvalidParam("include must be all or participated"))
		return
	}
	if req.Limit, err = queryLimit(r, defaultRelationsLimit, maxThreadsLimit); err == nil {
		req.From, err = queryToken(r, "from")
	}
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	resp := map[string]any{"chunk": []any{}}
	if req.Limit == 0 {
		jsonhttp.OK(w, resp)
		return
	}
	page, err := a.Rooms.Threads(r.Context(), req)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	chunk, err := a.Rooms.ClientEvents(r.Context(), page.Events, s.UserID, s.DeviceID, true)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	resp["chunk"] = chunk
	if page.Next >= 0 {
		resp["next_batch"] = posToken(page.Next)
	}
	jsonhttp.OK(w, resp)
}

func (a *API) timestampToEvent(w http.ResponseWriter, r *http.Request, s *store.Session) {
	roomID, err := roomIDParam(r)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	q := r.URL.Query()
	if q.Get("ts") == "" {
		jsonhttp.Error(w, r, matrix.MissingParam("ts is required"))
		return
	}
	ts, err := strconv.ParseInt(q.Get("ts"), 10, 64)
	if err != nil || ts < 0 {
		jsonhttp.Error(w, r, matrix.InvalidParam("ts must be a timestamp in milliseconds"))
		return
	}
	var backwards bool
	switch q.Get("dir") {
	case "":
		jsonhttp.Error(w, r, matrix.MissingParam("dir is required"))
		return
	case "b":
		backwards = true
	case "f":
	default:
		jsonhttp.Error(w, r, matrix.InvalidParam("dir must be b or f"))
		return
	}
	se, err := a.Rooms.EventAtTimestamp(r.Context(), roomID, s.UserID, ts, backwards)
	if a.Federation != nil && a.closerElsewhere(r, roomID, se, err, backwards) {
		// Another server may have a closer event in history this server
		// lacks: ask it, keep what it has, and look again (Server-Server
		// API, timestamp_to_event; as Synapse does).
		found, ferr := a.Federation.FetchEventAtTimestamp(r.Context(), roomID, ts, backwards)
		if ferr != nil {
			a.Federation.Log.Warn("timestamp_to_event: asking other servers", "room", roomID, "err", ferr)
		}
		if found {
			se, err = a.Rooms.EventAtTimestamp(r.Context(), roomID, s.UserID, ts, backwards)
		}
	}
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	pdu, err := a.Rooms.Event(r.Context(), se)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]any{"event_id": se.EventID, "origin_server_ts": pdu.OriginServerTS})
}

// closerElsewhere reports whether another server may have an event closer
// to the timestamp than the one found here: none was found (the user may
// read the room), or the one found is next to a hole in the history here
// in the direction looked — forwards, its prev events are missing;
// backwards, the event after it in the room's topological order does not
// cite it (Synapse's is_event_next_to_backward_gap / forward_gap).
func (a *API) closerElsewhere(r *http.Request, roomID string, found *store.StoredEvent, err error, backwards bool) bool {
	ctx := r.Context()
	if err != nil {
		me, ok := matrix.AsError(err)
		return ok && me.Code == matrix.ErrNotFound
	}
	if !backwards {
		missing, err := a.Rooms.MissingPrevs(ctx, roomID, []store.StoredEvent{*found})
		return err == nil && len(missing) > 0
	}
	next, err := a.Store.RoomEvents(ctx, store.RoomEventsQuery{RoomID: roomID, WithBackfilled: true, Topological: true, Limit: 1,
		After: math.MinInt64, Before: math.MaxInt64, AfterTopo: &store.TopoPoint{Depth: room.DepthOf(found.JSON), Pos: found.Pos}})
	if err != nil || len(next) == 0 {
		return false
	}
	return !slices.Contains(room.PrevEventsOf(next[0].JSON), found.EventID)
}
