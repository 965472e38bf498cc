package clientapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"conclave/internal/event"
	"conclave/internal/jsonhttp"
	"conclave/internal/matrix"
	"conclave/internal/store"
)

// Pagination tokens name a point in the global stream: "t123" is the point
// just after position 123. Sync tokens ("s123_…") are accepted as well,
// since clients paginate from a sync's prev_batch or next_batch.
func parsePosToken(tok string) (int64, bool) {
	if tok == "" {
		return 0, false
	}
	if tok[0] == 't' || tok[0] == 's' {
		tok = tok[1:]
	}
	if i := strings.IndexByte(tok, '_'); i >= 0 {
		tok = tok[:i]
	}
	n, err := strconv.ParseInt(tok, 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

func posToken(pos int64) string { return "t" + strconv.FormatInt(pos, 10) }

// Limits for /messages: the spec leaves the cap to the server; Synapse caps at 1000.
const (
	defaultMessagesLimit = 10
	maxMessagesLimit     = 1000
)

// roomEventFilter is the part of a RoomEventFilter /messages and /context apply.
type roomEventFilter struct {
	Limit                   *int     `json:"limit"`
	Types                   []string `json:"types"`
	NotTypes                []string `json:"not_types"`
	Senders                 []string `json:"senders"`
	NotSenders              []string `json:"not_senders"`
	ContainsURL             *bool    `json:"contains_url"`
	LazyLoadMembers         bool     `json:"lazy_load_members"`
	IncludeRedundantMembers bool     `json:"include_redundant_members"`
}

const maxFilterList = 100

func parseRoomEventFilter(raw string) (*roomEventFilter, error) {
	f := &roomEventFilter{}
	if raw == "" {
		return f, nil
	}
	if err := jsonhttp.Decode([]byte(raw), f); err != nil {
		return nil, matrix.InvalidParam("Invalid filter: %s", err.(*matrix.Error).Msg)
	}
	if len(f.Types) > maxFilterList || len(f.NotTypes) > maxFilterList || len(f.Senders) > maxFilterList || len(f.NotSenders) > maxFilterList {
		return nil, matrix.InvalidParam("Filter lists are limited to %d entries", maxFilterList)
	}
	return f, nil
}

func (a *API) messages(w http.ResponseWriter, r *http.Request, s *store.Session) {
	roomID, err := roomIDParam(r)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	// Who may read is decided before the parameters are looked at, as
	// Synapse does: an outsider learns nothing from a parameter error.
	vis, err := a.Rooms.CanRead(r.Context(), roomID, s.UserID)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	q := r.URL.Query()
	dir := q.Get("dir")
	if dir != "b" && dir != "f" {
		jsonhttp.Error(w, r, matrix.InvalidParam("dir must be b or f"))
		return
	}
	limit := defaultMessagesLimit
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			jsonhttp.Error(w, r, matrix.InvalidParam("limit must be a non-negative integer"))
			return
		}
		limit = min(n, maxMessagesLimit)
	}
	filter, err := parseRoomEventFilter(q.Get("filter"))
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	if filter.Limit != nil && *filter.Limit >= 0 && q.Get("limit") == "" {
		limit = min(*filter.Limit, maxMessagesLimit)
	}
	backwards := dir == "b"
	var from int64
	if t := q.Get("from"); t != "" {
		p, ok := parsePosToken(t)
		if !ok {
			jsonhttp.Error(w, r, matrix.InvalidParam("Invalid from token"))
			return
		}
		from = p
	} else if backwards {
		if from, err = a.Store.MaxStreamPos(r.Context()); err != nil {
			jsonhttp.Error(w, r, err)
			return
		}
	}
	var to int64 = -1
	if t := q.Get("to"); t != "" {
		p, ok := parsePosToken(t)
		if !ok {
			jsonhttp.Error(w, r, matrix.InvalidParam("Invalid to token"))
			return
		}
		to = p
	}
	// A user who left sees nothing after leaving (unless world readable).
	if cur := vis.Current(); (cur == "leave" || cur == "ban") && !vis.WorldReadable() {
		if backwards && from > vis.LastPos() {
			from = vis.LastPos()
		}
		if !backwards && (to < 0 || to > vis.LastPos()) {
			to = vis.LastPos()
		}
	}
	query := store.RoomEventsQuery{RoomID: roomID, Backwards: backwards, Limit: limit,
		Types: filter.Types, NotTypes: filter.NotTypes, Senders: filter.Senders, NotSenders: filter.NotSenders, ContainsURL: filter.ContainsURL}
	if backwards {
		query.Before = from + 1
		if to >= 0 {
			query.After = to
		}
	} else {
		query.After = from
		if to >= 0 {
			query.Before = to + 1
		}
	}
	resp := map[string]any{"start": posToken(from)}
	var rows []store.StoredEvent
	if limit > 0 && (query.Before == 0 || query.Before > query.After+1) {
		rows, err = a.Store.RoomEvents(r.Context(), query)
		if err != nil {
			jsonhttp.Error(w, r, err)
			return
		}
	}
	// Like Synapse, a page that returned events always carries an end token;
	// the page after the last one is empty and has none.
	if len(rows) > 0 {
		last := rows[len(rows)-1].Pos
		if backwards {
			resp["end"] = posToken(last - 1)
		} else {
			resp["end"] = posToken(last)
		}
	}
	visible, err := a.dropIgnored(r.Context(), s.UserID, vis.Filter(rows))
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	chunk, err := a.Rooms.ClientEvents(r.Context(), visible, s.UserID, s.DeviceID, true)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	resp["chunk"] = chunk
	if filter.LazyLoadMembers && len(visible) > 0 {
		state, err := a.memberStateFor(r, roomID, visible)
		if err != nil {
			jsonhttp.Error(w, r, err)
			return
		}
		resp["state"] = state
	}
	jsonhttp.OK(w, resp)
}

// memberStateFor returns the current member events of the senders of evs,
// for lazy-loading clients.
func (a *API) memberStateFor(r *http.Request, roomID string, evs []store.StoredEvent) ([]json.RawMessage, error) {
	senders := map[string]bool{}
	for i := range evs {
		senders[evs[i].Sender] = true
	}
	out := []json.RawMessage{}
	for u := range senders {
		p, err := a.Rooms.CurrentStateEvent(r.Context(), roomID, "m.room.member", u)
		if err != nil {
			return nil, err
		}
		if p != nil {
			out = append(out, event.AppendClientEvent(nil, p, nil))
		}
	}
	return out, nil
}

func (a *API) members(w http.ResponseWriter, r *http.Request, s *store.Session) {
	roomID, err := roomIDParam(r)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	q := r.URL.Query()
	vis, err := a.Rooms.CanRead(r.Context(), roomID, s.UserID)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	var state []*event.PDU
	at, hasAt := parsePosToken(q.Get("at"))
	if q.Get("at") != "" && !hasAt {
		jsonhttp.Error(w, r, matrix.InvalidParam("Invalid at token"))
		return
	}
	if cur := vis.Current(); cur != "join" && !vis.WorldReadable() {
		// As /state: one who left sees the members as they were when they
		// left, if they had been a member; one who was only invited (or
		// knocked) and then rejected or was refused never saw them.
		if cur == "invite" || cur == "knock" || cur == "" || !vis.EverJoined() {
			jsonhttp.Error(w, r, matrix.Forbidden("You are not a member of this room"))
			return
		}
		if !hasAt || at > vis.LastPos() {
			at, hasAt = vis.LastPos(), true
		}
	}
	if hasAt {
		state, err = a.Rooms.StateAt(r.Context(), roomID, at)
	} else {
		state, err = a.Rooms.CurrentState(r.Context(), roomID)
	}
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	want, notWant := q.Get("membership"), q.Get("not_membership")
	chunk := []json.RawMessage{}
	for _, p := range state {
		if p.Type != "m.room.member" {
			continue
		}
		var c struct {
			Membership string `json:"membership"`
		}
		json.Unmarshal(p.Content, &c)
		if (want != "" && c.Membership != want) || (notWant != "" && c.Membership == notWant) {
			continue
		}
		chunk = append(chunk, event.AppendClientEvent(nil, p, nil))
	}
	jsonhttp.OK(w, map[string]any{"chunk": chunk})
}
