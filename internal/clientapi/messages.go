package clientapi

import (
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"strings"

	"conclave/internal/event"
	"conclave/internal/jsonhttp"
	"conclave/internal/matrix"
	"conclave/internal/store"
	"conclave/internal/syncfilter"
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

// parseMessagesToken is parsePosToken for /messages, which also pages
// through backfilled history: "t-12" is the point just after the
// backfilled event at position -12 (store.KindBackfilled).
func parseMessagesToken(tok string) (int64, bool) {
	if rest, ok := strings.CutPrefix(tok, "t-"); ok {
		n, err := strconv.ParseInt(rest, 10, 64)
		if err != nil || n <= 0 {
			return 0, false
		}
		return -n, true
	}
	return parsePosToken(tok)
}

// Limits for /messages: the spec leaves the cap to the server; Synapse caps at 1000.
const (
	defaultMessagesLimit = 10
	maxMessagesLimit     = 1000
)

// roomFilter is the filter parameter of /messages and /context, parsed by
// the one filter parser /sync and filter upload use (syncfilter), so a
// filter means the same everywhere and a bad one gets the same error
// (M_NOT_JSON, M_BAD_JSON).
type roomFilter struct {
	f *syncfilter.RoomEventFilter // nil: none
	// query is the part the store applies; match, when set, is checked on
	// every row the store returns (type patterns with an inner "*"); none
	// is true when the filter matches no event of the room at all.
	query store.RoomEventsQuery
	match func(*store.StoredEvent) bool
	none  bool
}

func parseRoomFilter(raw, roomID string) (*roomFilter, error) {
	rf := &roomFilter{}
	if raw == "" {
		return rf, nil
	}
	f, err := syncfilter.ParseRoomEventFilter([]byte(raw))
	if err != nil {
		return nil, err
	}
	rf.f = f
	// The spec: an empty types or senders list matches nothing; rooms and
	// not_rooms apply to the room being read.
	if !f.MatchRoom(roomID) || (f.Types != nil && len(f.Types) == 0) || (f.Senders != nil && len(f.Senders) == 0) {
		rf.none = true
	}
	rf.query = store.RoomEventsQuery{Senders: f.Senders, NotSenders: f.NotSenders, ContainsURL: f.ContainsURL}
	if syncfilter.PrefixPatternsOnly(f.Types) && syncfilter.PrefixPatternsOnly(f.NotTypes) {
		rf.query.Types, rf.query.NotTypes = f.Types, f.NotTypes
	} else {
		rf.match = func(e *store.StoredEvent) bool { return f.EventFilter.Match(e.Type, e.Sender) }
	}
	return rf, nil
}

// keep returns the rows the filter's in-memory part lets through.
func (rf *roomFilter) keep(rows []store.StoredEvent) []store.StoredEvent {
	if rf.none {
		return nil
	}
	if rf.match == nil {
		return rows
	}
	out := rows[:0:0]
	for i := range rows {
		if rf.match(&rows[i]) {
			out = append(out, rows[i])
		}
	}
	return out
}

func (rf *roomFilter) lazyLoadMembers() bool { return rf.f != nil && rf.f.LazyLoadMembers }

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
	filter, err := parseRoomFilter(q.Get("filter"), roomID)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	if filter.f != nil && filter.f.Limit != nil && q.Get("limit") == "" {
		limit = min(*filter.f.Limit, maxMessagesLimit)
	}
	backwards := dir == "b"
	// No from when paging forwards: from the room's beginning, backfilled
	// history included.
	var from int64 = math.MinInt64
	if t := q.Get("from"); t != "" {
		p, ok := parseMessagesToken(t)
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
	var to int64
	hasTo := false
	if t := q.Get("to"); t != "" {
		p, ok := parseMessagesToken(t)
		if !ok {
			jsonhttp.Error(w, r, matrix.InvalidParam("Invalid to token"))
			return
		}
		to, hasTo = p, true
	}
	// A user who left sees nothing after leaving (unless world readable).
	if cur := vis.Current(); (cur == "leave" || cur == "ban") && !vis.WorldReadable() {
		if backwards && from > vis.LastPos() {
			from = vis.LastPos()
		}
		if !backwards && (!hasTo || to > vis.LastPos()) {
			to, hasTo = vis.LastPos(), true
		}
	}
	query := filter.query
	query.RoomID, query.Backwards, query.Limit, query.WithBackfilled = roomID, backwards, limit, true
	query.After, query.Before = math.MinInt64, math.MaxInt64
	if backwards {
		query.Before = from + 1
		if hasTo {
			query.After = to
		}
	} else {
		query.After = from
		if hasTo {
			query.Before = to + 1
		}
	}
	startPos := from
	if !backwards && q.Get("from") == "" {
		startPos = 0
	}
	resp := map[string]any{"start": posToken(startPos)}
	var rows []store.StoredEvent
	if limit > 0 && !filter.none && query.Before > query.After+1 {
		rows, err = a.Store.RoomEvents(r.Context(), query)
		if err != nil {
			jsonhttp.Error(w, r, err)
			return
		}
		// The history here ran out before the page was full: a room joined
		// through another server may have more before the join (Server-Server
		// API, "Backfilling"): ask a server in the room, then read again.
		if backwards && len(rows) < limit && q.Get("to") == "" && a.Federation != nil {
			n, err := a.Federation.BackfillRoom(r.Context(), roomID, limit)
			if err != nil {
				a.Federation.Log.Warn("messages: backfilling", "room", roomID, "err", err)
			}
			if n > 0 {
				if rows, err = a.Store.RoomEvents(r.Context(), query); err != nil {
					jsonhttp.Error(w, r, err)
					return
				}
			}
		}
	}
	// Like Synapse, a page that returned events always carries an end token;
	// the page after the last one is empty and has none. The token follows
	// the rows the store returned, so rows the filter drops in memory make
	// a page shorter, never lose the rows after it.
	if len(rows) > 0 {
		last := rows[len(rows)-1].Pos
		if backwards {
			resp["end"] = posToken(last - 1)
		} else {
			resp["end"] = posToken(last)
		}
	}
	visible, err := a.dropIgnored(r.Context(), s.UserID, vis.Filter(filter.keep(rows)))
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
	if filter.lazyLoadMembers() && len(visible) > 0 {
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
