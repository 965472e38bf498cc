package room

import (
	"context"
	"encoding/json"
	"strconv"

	"conclave/internal/store"
)

// RelationsRequest pages the events relating to one event
// (GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]).
// From and To are stream points ("just after position p"); -1: none.
type RelationsRequest struct {
	RoomID, EventID, UserID string
	RelType, EventType      string
	From, To                int64
	Backwards               bool
	Limit                   int
}

// Page is a page of events and, when more may follow, the stream point to
// continue from (Next >= 0).
type Page struct {
	Events []store.StoredEvent
	Next   int64
}

// Relations returns the visible events relating to an event the user may
// see: M_FORBIDDEN if the user may not read the room, M_NOT_FOUND if the
// parent is unknown or hidden from them.
func (s *Service) Relations(ctx context.Context, req *RelationsRequest) (*Page, error) {
	vis, err := s.CanRead(ctx, req.RoomID, req.UserID)
	if err != nil {
		return nil, err
	}
	if _, err := s.EventForUser(ctx, req.RoomID, req.EventID, req.UserID); err != nil {
		return nil, err
	}
	q := store.RelationsQuery{RoomID: req.RoomID, EventID: req.EventID, RelType: req.RelType, EventType: req.EventType,
		Backwards: req.Backwards, Limit: req.Limit}
	if req.Backwards {
		if req.From >= 0 {
			q.Before = req.From + 1
		}
		if req.To >= 0 {
			q.After = req.To
		}
	} else {
		if req.From >= 0 {
			q.After = req.From
		}
		if req.To >= 0 {
			q.Before = req.To + 1
		}
	}
	page := &Page{Next: -1}
	if q.Before != 0 && q.Before <= q.After+1 {
		return page, nil
	}
	rows, err := s.store.Relations(ctx, q)
	if err != nil {
		return nil, err
	}
	if len(rows) == req.Limit && len(rows) > 0 {
		last := rows[len(rows)-1].Pos
		if req.Backwards {
			page.Next = last - 1
		} else {
			page.Next = last
		}
	}
	page.Events = vis.Filter(rows)
	return page, nil
}

// ThreadsRequest pages a room's threads (GET /_matrix/client/v1/rooms/{roomId}/threads).
type ThreadsRequest struct {
	RoomID, UserID string
	Participated   bool  // include=participated
	From           int64 // threads whose latest activity is at or before this point; -1: none
	Limit          int
}

// Threads returns the visible thread roots of a room, latest activity first.
func (s *Service) Threads(ctx context.Context, req *ThreadsRequest) (*Page, error) {
	vis, err := s.CanRead(ctx, req.RoomID, req.UserID)
	if err != nil {
		return nil, err
	}
	q := store.ThreadsQuery{RoomID: req.RoomID, Limit: req.Limit}
	if req.Participated {
		q.ParticipatedBy = req.UserID
	}
	if req.From >= 0 {
		q.Before = req.From + 1
	}
	page := &Page{Next: -1}
	threads, err := s.store.Threads(ctx, q)
	if err != nil {
		return nil, err
	}
	if len(threads) == req.Limit && len(threads) > 0 {
		page.Next = threads[len(threads)-1].LatestPos - 1
	}
	ids := make([]string, len(threads))
	for i, t := range threads {
		ids[i] = t.RootID
	}
	found, err := s.store.GetEvents(ctx, ids)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]*store.StoredEvent, len(found))
	for i := range found {
		byID[found[i].EventID] = &found[i]
	}
	for _, id := range ids {
		if root := byID[id]; root != nil && vis.CanSee(root.Pos, root) {
			page.Events = append(page.Events, *root)
		}
	}
	return page, nil
}

// bundledAggregations builds unsigned["m.relations"] for the events that
// have any (Client-Server API, "Aggregations of child events"): m.thread
// (latest_event, count, current_user_participated), m.replace (the latest
// valid edit in full, spec v1.7+) and m.reference (chunk of event IDs).
// State events and redacted events get none. It costs one query for the
// whole page, plus one to fetch the latest thread replies and edits.
// mayHaveRelations reports whether any of rows may be the target of a
// relation: false only when position tracking knows that no event with a
// relation was written in their rooms after the earliest of them (the
// common /sync case of fresh messages nobody has replied to yet).
func (s *Service) mayHaveRelations(rows []store.StoredEvent) bool {
	first := map[string]int64{}
	for i := range rows {
		if p, ok := first[rows[i].RoomID]; !ok || rows[i].Pos < p {
			first[rows[i].RoomID] = rows[i].Pos
		}
	}
	for roomID, p := range first {
		if s.relationsAfter(roomID, p) {
			return true
		}
	}
	return false
}

func (s *Service) bundledAggregations(ctx context.Context, rows []store.StoredEvent, userID, deviceID string, withRoomID bool) (map[string][]byte, error) {
	if s.SkipAggregations {
		return nil, nil
	}
	ids := make([]string, 0, len(rows))
	senders := make(map[string]string, len(rows))
	for i := range rows {
		if rows[i].StateKey == nil && rows[i].RedactedBy == "" {
			ids = append(ids, rows[i].EventID)
			senders[rows[i].EventID] = rows[i].Sender
		}
	}
	if len(ids) == 0 || !s.mayHaveRelations(rows) {
		return nil, nil
	}
	br, err := s.store.BundledRelations(ctx, ids, userID)
	if err != nil {
		return nil, err
	}
	if len(br.Threads) == 0 && len(br.Edits) == 0 && len(br.References) == 0 {
		return nil, nil
	}
	var need []string
	for _, t := range br.Threads {
		need = append(need, t.LatestEventID)
	}
	for _, e := range br.Edits {
		need = append(need, e)
	}
	formatted := map[string]json.RawMessage{}
	if len(need) > 0 {
		found, err := s.store.GetEvents(ctx, need)
		if err != nil {
			return nil, err
		}
		now := s.now().UnixMilli()
		for i := range found {
			b, err := s.clientEvent(ctx, &found[i], nil, nil, userID, deviceID, withRoomID, now, "")
			if err != nil {
				return nil, err
			}
			formatted[found[i].EventID] = b
		}
	}
	out := make(map[string][]byte)
	for _, id := range ids {
		var b []byte
		add := func(key string) {
			if b == nil {
				b = append(b, '{')
			} else {
				b = append(b, ',')
			}
			b = appendJSONString(b, key)
			b = append(b, ':')
		}
		if t, ok := br.Threads[id]; ok && formatted[t.LatestEventID] != nil {
			add("m.thread")
			b = append(b, `{"latest_event":`...)
			b = append(b, formatted[t.LatestEventID]...)
			b = append(b, `,"count":`...)
			b = strconv.AppendInt(b, int64(t.Count), 10)
			b = append(b, `,"current_user_participated":`...)
			b = strconv.AppendBool(b, t.Participated || senders[id] == userID)
			b = append(b, '}')
		}
		if e, ok := br.Edits[id]; ok && formatted[e] != nil {
			add("m.replace")
			b = append(b, formatted[e]...)
		}
		if refs := br.References[id]; len(refs) > 0 {
			add("m.reference")
			b = append(b, `{"chunk":[`...)
			for i, r := range refs {
				if i > 0 {
					b = append(b, ',')
				}
				b = append(b, `{"event_id":`...)
				b = appendJSONString(b, r)
				b = append(b, '}')
			}
			b = append(b, `]}`...)
		}
		if b != nil {
			out[id] = append(b, '}')
		}
	}
	return out, nil
}
