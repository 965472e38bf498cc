package clientapi

import (
	"encoding/json"
	"net/http"

	"conclave/internal/event"
	"conclave/internal/jsonhttp"
	"conclave/internal/room"
	"conclave/internal/store"
)

// maxContextLimit caps events_before + events_after.
const maxContextLimit = 100

func (a *API) eventContext(w http.ResponseWriter, r *http.Request, s *store.Session) {
	roomID, err := roomIDParam(r)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	limit, err := queryLimit(r, 10, maxContextLimit)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	filter, err := parseRoomFilter(r.URL.Query().Get("filter"), roomID)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	res, err := a.Rooms.Context(r.Context(), &room.ContextRequest{RoomID: roomID, EventID: r.PathValue("eventId"), UserID: s.UserID, Limit: limit,
		Filter: filter.query})
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	// The filter applies to the events around the one asked for, never to
	// that event itself.
	res.Before, res.After = filter.keep(res.Before), filter.keep(res.After)
	// One formatting pass (one aggregation query) for all three parts.
	all := make([]store.StoredEvent, 0, len(res.Before)+1+len(res.After))
	all = append(all, res.Before...)
	all = append(all, *res.Event)
	all = append(all, res.After...)
	formatted, err := a.Rooms.ClientEvents(r.Context(), all, s.UserID, s.DeviceID, true)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	nb := len(res.Before)
	var senders map[string]bool
	if filter.lazyLoadMembers() {
		senders = map[string]bool{}
		for i := range all {
			senders[all[i].Sender] = true
		}
	}
	state := []json.RawMessage{}
	for _, p := range res.State {
		if senders != nil && (p.Type != "m.room.member" || p.StateKey == nil || !senders[*p.StateKey]) {
			continue
		}
		state = append(state, event.AppendClientEvent(nil, p, nil))
	}
	jsonhttp.OK(w, map[string]any{
		"start":         msgPoint{topo: true, depth: res.Start.Depth, pos: res.Start.Pos}.String(),
		"end":           msgPoint{topo: true, depth: res.End.Depth, pos: res.End.Pos}.String(),
		"event":         formatted[nb],
		"events_before": formatted[:nb],
		"events_after":  formatted[nb+1:],
		"state":         state,
	})
}
