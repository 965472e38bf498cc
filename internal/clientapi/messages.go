package clientapi

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"conclave/internal/event"
	"conclave/internal/jsonhttp"
	"conclave/internal/matrix"
	"conclave/internal/room"
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

// msgPoint is where /messages pages from or to. /messages pages a room in
// topological order, (depth, position), as Synapse does, so that history
// backfilled into a gap (stored at negative positions, below everything)
// comes where it belongs. Its own tokens are topological: "d12_-40" is the
// point just after the event of depth 12 at position -40. Stream tokens
// (sync's next_batch and prev_batch, "t123", /context's) bound the stream
// position instead, the rows still in topological order.
type msgPoint struct {
	topo       bool
	depth, pos int64
}

func (p msgPoint) String() string {
	if !p.topo {
		return posToken(p.pos)
	}
	return "d" + strconv.FormatInt(p.depth, 10) + "_" + strconv.FormatInt(p.pos, 10)
}

// parseMessagesPoint reads a /messages from or to token.
func parseMessagesPoint(tok string) (msgPoint, bool) {
	if rest, ok := strings.CutPrefix(tok, "d"); ok {
		d, p, ok := strings.Cut(rest, "_")
		depth, err1 := strconv.ParseInt(d, 10, 64)
		pos, err2 := strconv.ParseInt(p, 10, 64)
		// Both ends of int64 are kept out: bounds add one to them.
		if !ok || err1 != nil || err2 != nil || pos == math.MaxInt64 || pos == math.MinInt64 {
			return msgPoint{}, false
		}
		return msgPoint{topo: true, depth: depth, pos: pos}, true
	}
	// "t-12": a stream token below the timeline (a /context of a
	// backfilled event).
	if rest, ok := strings.CutPrefix(tok, "t-"); ok {
		n, err := strconv.ParseInt(rest, 10, 64)
		if err != nil || n <= 0 {
			return msgPoint{}, false
		}
		return msgPoint{pos: -n}, true
	}
	pos, ok := parsePosToken(tok)
	if !ok || pos == math.MaxInt64 {
		return msgPoint{}, false
	}
	return msgPoint{pos: pos}, true
}

// bound makes p the upper bound of q (upper: the rows before p) or its
// lower bound (the rows after p).
func (p msgPoint) bound(q *store.RoomEventsQuery, upper bool) {
	switch {
	case p.topo && upper:
		q.BeforeTopo = &store.TopoPoint{Depth: p.depth, Pos: p.pos + 1}
	case p.topo:
		q.AfterTopo = &store.TopoPoint{Depth: p.depth, Pos: p.pos}
	case upper:
		q.Before = p.pos + 1
	default:
		q.After = p.pos
	}
}

// backfillRounds and backfillWait bound the backfilling of one /messages
// page.
const (
	backfillRounds = 3
	backfillWait   = 15 * time.Second
)

// backfillPage fills the gaps a backwards page meets: events of the page,
// or the event just above it (the previous page's last), whose prev events
// this server lacks (the room's history here starts with a join through
// another server, or has a hole where this server was out of the room), or,
// for a page that is not full, the history before the room's earliest
// events here. A server in the room is asked for the events before them
// (Server-Server API, "Backfilling and retrieving missing events") and the
// page is read again, a few rounds at most; a page that still meets a gap
// ends at it, so the next page starts there.
func (a *API) backfillPage(r *http.Request, roomID string, query store.RoomEventsQuery, rows []store.StoredEvent) (_ []store.StoredEvent, backfilled bool, err error) {
	ctx := r.Context()
	var above []store.StoredEvent
	if b := query.BeforeTopo; b != nil {
		var err error
		above, err = a.Store.RoomEvents(ctx, store.RoomEventsQuery{RoomID: roomID, WithBackfilled: true, Topological: true,
			After: math.MinInt64, Before: math.MaxInt64, AfterTopo: &store.TopoPoint{Depth: b.Depth, Pos: b.Pos - 1}, Limit: 1})
		if err != nil {
			return nil, false, err
		}
	}
	// The rows are read again with the request's context; the servers asked
	// get backfillWait in all.
	fetchCtx, cancel := context.WithTimeout(ctx, backfillWait)
	defer cancel()
	for round := 0; ; round++ {
		points, err := a.Rooms.MissingPrevs(ctx, roomID, append(slices.Clone(above), rows...))
		if err != nil {
			return nil, backfilled, err
		}
		if len(points) == 0 && (round > 0 || len(rows) == query.Limit) {
			return rows, backfilled, nil
		}
		if round == backfillRounds {
			return cutAtGap(rows, points), backfilled, nil
		}
		n, err := a.Federation.BackfillRoom(fetchCtx, roomID, points, query.Limit)
		if err != nil {
			a.Federation.Log.Warn("messages: backfilling", "room", roomID, "err", err)
		}
		if n == 0 {
			return cutAtGap(rows, points), backfilled, nil
		}
		backfilled = true
		if rows, err = a.Store.RoomEvents(ctx, query); err != nil {
			return nil, backfilled, err
		}
	}
}

// cutAtGap ends a page at its first event whose prev events are among the
// missing ones: what follows it in the page may belong after what is
// missing.
func cutAtGap(rows []store.StoredEvent, missing []string) []store.StoredEvent {
	for i := range rows {
		for _, p := range room.PrevEventsOf(rows[i].JSON) {
			if slices.Contains(missing, p) {
				return rows[:i+1]
			}
		}
	}
	return rows
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
	query := filter.query
	query.RoomID, query.Backwards, query.Limit = roomID, backwards, limit
	query.WithBackfilled, query.Topological = true, true
	query.After, query.Before = math.MinInt64, math.MaxInt64
	var start string
	if t := q.Get("from"); t != "" {
		p, ok := parseMessagesPoint(t)
		if !ok {
			jsonhttp.Error(w, r, matrix.InvalidParam("Invalid from token"))
			return
		}
		p.bound(&query, backwards)
		start = t
	} else if backwards {
		maxPos, err := a.Store.MaxStreamPos(r.Context())
		if err != nil {
			jsonhttp.Error(w, r, err)
			return
		}
		query.Before = maxPos + 1
		start = posToken(maxPos)
	} else {
		// Forwards without from: from the room's beginning, backfilled
		// history included.
		start = posToken(0)
	}
	if t := q.Get("to"); t != "" {
		p, ok := parseMessagesPoint(t)
		if !ok {
			jsonhttp.Error(w, r, matrix.InvalidParam("Invalid to token"))
			return
		}
		p.bound(&query, !backwards)
	}
	// A user who left sees nothing after leaving (unless world readable).
	if cur := vis.Current(); (cur == "leave" || cur == "ban") && !vis.WorldReadable() {
		query.Before = min(query.Before, vis.LastPos()+1)
	}
	resp := map[string]any{"start": start}
	var rows []store.StoredEvent
	if limit > 0 && !filter.none && query.Before > query.After+1 {
		rows, err = a.Store.RoomEvents(r.Context(), query)
		if err != nil {
			jsonhttp.Error(w, r, err)
			return
		}
		if backwards && q.Get("to") == "" && a.Federation != nil {
			var more bool
			if rows, more, err = a.backfillPage(r, roomID, query, rows); err != nil {
				jsonhttp.Error(w, r, err)
				return
			}
			if more {
				// What is visible depends on the history_visibility events
				// just backfilled too.
				if vis, err = a.Rooms.CanRead(r.Context(), roomID, s.UserID); err != nil {
					jsonhttp.Error(w, r, err)
					return
				}
			}
		}
	}
	// Like Synapse, a page that returned events always carries an end token;
	// the page after the last one is empty and has none. The token follows
	// the rows the store returned, so rows the filter drops in memory make
	// a page shorter, never lose the rows after it. It is a point in the
	// room's topological order (depth, position).
	if len(rows) > 0 {
		last := &rows[len(rows)-1]
		p := msgPoint{topo: true, depth: room.DepthOf(last.JSON), pos: last.Pos}
		if backwards {
			p.pos--
		}
		resp["end"] = p.String()
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
