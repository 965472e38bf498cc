package clientapi

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"conclave/internal/event"
	"conclave/internal/jsonhttp"
	"conclave/internal/matrix"
	"conclave/internal/room"
	"conclave/internal/store"
)

// Server-side search (spec: Client-Server API, "Server Side Search"):
// POST /search with the room_events category, backed by the store's
// full-text index (SQLite FTS5).
func (a *API) registerSearch(mux Mux) {
	handle(mux, "POST", "/search", a.authed(a.perUser(searchLimit, a.search)))
}

// Search bounds.
const (
	defaultSearchLimit = 10 // Synapse's default
	maxSearchLimit     = 100
	maxSearchTermLen   = 1000
	maxSearchTerms     = 20
	defaultContextSize = 5 // spec: before_limit / after_limit default
	maxContextSize     = 50
	maxSearchScans     = 5 // pages scanned to fill one page of visible results
)

var searchKeys = []string{"content.body", "content.name", "content.topic"}

type searchFilter struct {
	Limit      *int     `json:"limit"`
	Rooms      []string `json:"rooms"`
	NotRooms   []string `json:"not_rooms"`
	Senders    []string `json:"senders"`
	NotSenders []string `json:"not_senders"`
	Types      []string `json:"types"`
	NotTypes   []string `json:"not_types"`
}

type roomEventsCriteria struct {
	SearchTerm   *string       `json:"search_term"`
	Keys         []string      `json:"keys"`
	Filter       *searchFilter `json:"filter"`
	OrderBy      string        `json:"order_by"`
	EventContext *struct {
		BeforeLimit    *int `json:"before_limit"`
		AfterLimit     *int `json:"after_limit"`
		IncludeProfile bool `json:"include_profile"`
	} `json:"event_context"`
	IncludeState bool `json:"include_state"`
	Groupings    *struct {
		GroupBy []struct {
			Key string `json:"key"`
		} `json:"group_by"`
	} `json:"groupings"`
}

type searchRequest struct {
	SearchCategories *struct {
		RoomEvents *roomEventsCriteria `json:"room_events"`
	} `json:"search_categories"`
}

// searchTerms splits a search term into words (letters and digits), lower
// case, as the index's tokenizer does.
func searchTerms(term string) []string {
	words := strings.FieldsFunc(strings.ToLower(term), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsNumber(r) })
	if len(words) > maxSearchTerms {
		words = words[:maxSearchTerms]
	}
	return words
}

// maxFilterList bounds the lists of a search filter and of a room directory
// filter.
const maxFilterList = 100

func checkFilterList(l []string) error {
	if len(l) > maxFilterList {
		return matrix.InvalidParam("Filter lists are limited to %d entries", maxFilterList)
	}
	return nil
}

func (a *API) search(w http.ResponseWriter, r *http.Request, s *store.Session) {
	var req searchRequest
	if err := jsonhttp.Read(r, a.maxBody, &req); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	if req.SearchCategories == nil {
		jsonhttp.Error(w, r, matrix.MissingParam("Missing search_categories"))
		return
	}
	out := map[string]any{}
	if c := req.SearchCategories.RoomEvents; c != nil {
		res, err := a.searchRoomEvents(r.Context(), s, c, r.URL.Query().Get("next_batch"))
		if err != nil {
			jsonhttp.Error(w, r, err)
			return
		}
		out["room_events"] = res
	}
	jsonhttp.OK(w, map[string]any{"search_categories": out})
}

type searchCursor struct {
	recent bool
	pos    int64 // recent: results below this position (0: from the newest)
	offset int   // rank: results already returned
}

// next_batch tokens: "r<pos>" for recent order, "k<offset>" for rank order.
func (c searchCursor) String() string {
	if c.recent {
		return "r" + strconv.FormatInt(c.pos, 10)
	}
	return "k" + strconv.Itoa(c.offset)
}

func parseSearchCursor(tok string, recent bool) (searchCursor, error) {
	c := searchCursor{recent: recent}
	if tok == "" {
		return c, nil
	}
	bad := matrix.InvalidParam("Invalid next_batch token")
	if len(tok) < 2 || (recent && tok[0] != 'r') || (!recent && tok[0] != 'k') {
		return c, bad
	}
	n, err := strconv.ParseInt(tok[1:], 10, 64)
	if err != nil || n < 0 || (!recent && n > 1<<30) {
		return c, bad
	}
	if recent {
		c.pos = n
	} else {
		c.offset = int(n)
	}
	return c, nil
}

func (a *API) searchRoomEvents(ctx context.Context, s *store.Session, c *roomEventsCriteria, nextBatch string) (map[string]any, error) {
	if c.SearchTerm == nil {
		return nil, matrix.MissingParam("Missing search_term")
	}
	if len(*c.SearchTerm) > maxSearchTermLen {
		return nil, matrix.InvalidParam("search_term is longer than %d bytes", maxSearchTermLen)
	}
	for _, k := range c.Keys {
		if !slices.Contains(searchKeys, k) {
			return nil, matrix.InvalidParam("Unknown search key %q", k)
		}
	}
	if c.OrderBy != "" && c.OrderBy != "rank" && c.OrderBy != "recent" {
		return nil, matrix.InvalidParam("order_by must be rank or recent")
	}
	recent := c.OrderBy == "recent"
	cur, err := parseSearchCursor(nextBatch, recent)
	if err != nil {
		return nil, err
	}
	f := c.Filter
	if f == nil {
		f = &searchFilter{}
	}
	for _, l := range [][]string{f.Rooms, f.NotRooms, f.Senders, f.NotSenders, f.Types, f.NotTypes} {
		if err := checkFilterList(l); err != nil {
			return nil, err
		}
	}
	limit := defaultSearchLimit
	if f.Limit != nil {
		if *f.Limit < 1 {
			return nil, matrix.InvalidParam("filter.limit must be positive")
		}
		limit = min(*f.Limit, maxSearchLimit)
	}
	before, after, profiles := 0, 0, false
	if ec := c.EventContext; ec != nil {
		before, after, profiles = defaultContextSize, defaultContextSize, ec.IncludeProfile
		if ec.BeforeLimit != nil {
			before = *ec.BeforeLimit
		}
		if ec.AfterLimit != nil {
			after = *ec.AfterLimit
		}
		if before < 0 || after < 0 {
			return nil, matrix.InvalidParam("Context limits must not be negative")
		}
		before, after = min(before, maxContextSize), min(after, maxContextSize)
	}
	var groupBy []string
	if c.Groupings != nil {
		for _, g := range c.Groupings.GroupBy {
			if g.Key != "room_id" && g.Key != "sender" {
				return nil, matrix.InvalidParam("Unknown group_by key %q", g.Key)
			}
			groupBy = append(groupBy, g.Key)
		}
	}

	terms := searchTerms(*c.SearchTerm)
	q := &store.SearchQuery{Terms: terms, Keys: c.Keys, JoinedBy: s.UserID, RoomIDs: f.Rooms, NotRoomIDs: f.NotRooms,
		Senders: f.Senders, NotSenders: f.NotSenders, Types: f.Types, NotTypes: f.NotTypes, Recent: recent, Limit: limit + 1}
	ignored, err := a.AccountData.IgnoredUsers(ctx, s.UserID)
	if err != nil {
		return nil, err
	}
	vis := map[string]*room.Visibility{}
	visible := func(e *store.StoredEvent) (bool, error) {
		if ignored[e.Sender] && e.StateKey == nil {
			return false, nil
		}
		v := vis[e.RoomID]
		if v == nil {
			if v, err = a.Rooms.Visibility(ctx, e.RoomID, s.UserID); err != nil {
				return false, err
			}
			vis[e.RoomID] = v
		}
		return v.CanSee(e.Pos, e), nil
	}

	// Scan pages of hits until a page of visible results is full: the
	// cursor advances past every hit looked at, shown or not.
	var hits []store.SearchHit
	count := 0
	more := false
	for scan := 0; scan < maxSearchScans && len(hits) < limit && len(terms) > 0; scan++ {
		q.BeforePos, q.Offset = cur.pos, cur.offset
		page, n, err := a.Store.SearchEvents(ctx, q)
		if err != nil {
			return nil, err
		}
		if scan == 0 {
			count = n
		}
		for i := range page {
			if len(hits) == limit {
				break
			}
			cur.pos, cur.offset = page[i].Event.Pos, cur.offset+1
			ok, err := visible(&page[i].Event)
			if err != nil {
				return nil, err
			}
			if ok {
				hits = append(hits, page[i])
			}
		}
		more = len(page) == q.Limit
		if !more {
			break
		}
	}

	evs := make([]store.StoredEvent, len(hits))
	for i := range hits {
		evs[i] = hits[i].Event
	}
	formatted, err := a.Rooms.ClientEvents(ctx, evs, s.UserID, s.DeviceID, true)
	if err != nil {
		return nil, err
	}
	results := make([]map[string]any, len(hits))
	for i := range hits {
		res := map[string]any{"rank": hits[i].Rank, "result": formatted[i]}
		if c.EventContext != nil {
			ctxRes, err := a.searchContext(ctx, s, &evs[i], before, after, profiles, visible)
			if err != nil {
				return nil, err
			}
			res["context"] = ctxRes
		}
		results[i] = res
	}
	highlights := terms
	if highlights == nil {
		highlights = []string{}
	}
	out := map[string]any{"count": count, "results": results, "highlights": highlights}
	// Like Synapse, a full page (or a scan that stopped early) gets a
	// next_batch; the page after the last one is empty and has none.
	if len(hits) == limit || more {
		out["next_batch"] = cur.String()
	}
	if c.IncludeState {
		state := map[string][]json.RawMessage{}
		for i := range evs {
			if _, done := state[evs[i].RoomID]; done {
				continue
			}
			pdus, err := a.Rooms.CurrentState(ctx, evs[i].RoomID)
			if err != nil {
				return nil, err
			}
			list := make([]json.RawMessage, 0, len(pdus))
			for _, p := range pdus {
				list = append(list, event.AppendClientEvent(nil, p, nil))
			}
			state[evs[i].RoomID] = list
		}
		out["state"] = state
	}
	if len(groupBy) > 0 {
		groups := map[string]map[string]map[string]any{}
		for _, key := range groupBy {
			g := map[string]map[string]any{}
			for i := range evs {
				v := evs[i].RoomID
				if key == "sender" {
					v = evs[i].Sender
				}
				e := g[v]
				if e == nil {
					e = map[string]any{"results": []string{}, "order": len(g)}
					g[v] = e
				}
				e["results"] = append(e["results"].([]string), evs[i].EventID)
			}
			groups[key] = g
		}
		out["groups"] = groups
	}
	return out, nil
}

// searchContext returns the events around one result that the user may
// see: events_before newest first, events_after oldest first.
func (a *API) searchContext(ctx context.Context, s *store.Session, e *store.StoredEvent, before, after int, profiles bool,
	visible func(*store.StoredEvent) (bool, error)) (map[string]any, error) {
	load := func(q store.RoomEventsQuery) ([]store.StoredEvent, error) {
		if q.Limit == 0 {
			return nil, nil
		}
		rows, err := a.Store.RoomEvents(ctx, q)
		if err != nil {
			return nil, err
		}
		kept := rows[:0]
		for i := range rows {
			ok, err := visible(&rows[i])
			if err != nil {
				return nil, err
			}
			if ok {
				kept = append(kept, rows[i])
			}
		}
		return kept, nil
	}
	// In the room's topological order, backfilled history included, as
	// /context and /messages read it.
	at := msgPoint{topo: true, depth: room.DepthOf(e.JSON), pos: e.Pos}
	around := func(backwards bool, limit int) store.RoomEventsQuery {
		q := store.RoomEventsQuery{RoomID: e.RoomID, Backwards: backwards, Limit: limit, WithBackfilled: true, Topological: true,
			After: math.MinInt64, Before: math.MaxInt64}
		if backwards {
			// The point just before the event.
			msgPoint{topo: true, depth: at.depth, pos: at.pos - 1}.bound(&q, true)
		} else {
			at.bound(&q, false)
		}
		return q
	}
	bef, err := load(around(true, before))
	if err != nil {
		return nil, err
	}
	aft, err := load(around(false, after))
	if err != nil {
		return nil, err
	}
	fb, err := a.Rooms.ClientEvents(ctx, bef, s.UserID, s.DeviceID, true)
	if err != nil {
		return nil, err
	}
	fa, err := a.Rooms.ClientEvents(ctx, aft, s.UserID, s.DeviceID, true)
	if err != nil {
		return nil, err
	}
	start, end := at, at
	start.pos--
	if len(bef) > 0 {
		last := &bef[len(bef)-1]
		start = msgPoint{topo: true, depth: room.DepthOf(last.JSON), pos: last.Pos - 1}
	}
	if len(aft) > 0 {
		last := &aft[len(aft)-1]
		end = msgPoint{topo: true, depth: room.DepthOf(last.JSON), pos: last.Pos}
	}
	out := map[string]any{"start": start.String(), "end": end.String(), "events_before": nonNil(fb), "events_after": nonNil(fa)}
	if profiles {
		info := map[string]map[string]any{}
		for _, ev := range slices.Concat(bef, []store.StoredEvent{*e}, aft) {
			if _, done := info[ev.Sender]; done {
				continue
			}
			p, err := a.Rooms.CurrentStateEvent(ctx, e.RoomID, "m.room.member", ev.Sender)
			if err != nil {
				return nil, err
			}
			prof := map[string]any{}
			if p != nil {
				var c struct {
					DisplayName *string `json:"displayname"`
					AvatarURL   *string `json:"avatar_url"`
				}
				json.Unmarshal(p.Content, &c)
				if c.DisplayName != nil {
					prof["displayname"] = *c.DisplayName
				}
				if c.AvatarURL != nil {
					prof["avatar_url"] = *c.AvatarURL
				}
			}
			info[ev.Sender] = prof
		}
		out["profile_info"] = info
	}
	return out, nil
}

func nonNil(l []json.RawMessage) []json.RawMessage {
	if l == nil {
		return []json.RawMessage{}
	}
	return l
}
