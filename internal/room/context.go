package room

import (
	"context"
	"math"

	"conclave/internal/event"
	"conclave/internal/store"
)

// ContextRequest asks for the events around one event
// (GET /rooms/{roomId}/context/{eventId}). Filter carries the
// RoomEventFilter's type/sender/contains_url parts; its room, bounds and
// limit are set here.
type ContextRequest struct {
	RoomID, EventID, UserID string
	Limit                   int
	Filter                  store.RoomEventsQuery
}

// EventContext is the answer: the event, the visible events before it
// (newest first) and after it (oldest first), the room state at the event,
// and the points of the room's topological order, as /messages pages it,
// to paginate further back (Start: before it) and forward (End: after it).
type EventContext struct {
	Event  *store.StoredEvent
	Before []store.StoredEvent
	After  []store.StoredEvent
	State  []*event.PDU
	Start  store.TopoPoint
	End    store.TopoPoint
}

// Context returns the context of an event. Like Synapse, the limit is split
// floor(limit/2) before and the rest after. M_FORBIDDEN if the user may not
// read the room, M_NOT_FOUND if the event is unknown or hidden from them.
func (s *Service) Context(ctx context.Context, req *ContextRequest) (*EventContext, error) {
	vis, err := s.CanRead(ctx, req.RoomID, req.UserID)
	if err != nil {
		return nil, err
	}
	ev, err := s.EventForUser(ctx, req.RoomID, req.EventID, req.UserID)
	if err != nil {
		return nil, err
	}
	// The events around it in the room's topological order, backfilled
	// history included, as /messages pages it.
	at := store.TopoPoint{Depth: DepthOf(ev.JSON), Pos: ev.Pos}
	out := &EventContext{Event: ev, Start: store.TopoPoint{Depth: at.Depth, Pos: at.Pos - 1}, End: at}
	beforeLimit := req.Limit / 2
	afterLimit := req.Limit - beforeLimit
	if beforeLimit > 0 {
		q := req.Filter
		q.RoomID, q.Backwards, q.Limit, q.WithBackfilled, q.Topological = req.RoomID, true, beforeLimit, true, true
		q.After, q.Before, q.BeforeTopo = math.MinInt64, math.MaxInt64, &at
		rows, err := s.store.RoomEvents(ctx, q)
		if err != nil {
			return nil, err
		}
		if len(rows) > 0 {
			last := &rows[len(rows)-1]
			out.Start = store.TopoPoint{Depth: DepthOf(last.JSON), Pos: last.Pos - 1}
		}
		out.Before = vis.Filter(rows)
	}
	if afterLimit > 0 {
		q := req.Filter
		q.RoomID, q.Backwards, q.Limit, q.WithBackfilled, q.Topological = req.RoomID, false, afterLimit, true, true
		q.After, q.Before, q.AfterTopo = math.MinInt64, math.MaxInt64, &at
		rows, err := s.store.RoomEvents(ctx, q)
		if err != nil {
			return nil, err
		}
		if len(rows) > 0 {
			last := &rows[len(rows)-1]
			out.End = store.TopoPoint{Depth: DepthOf(last.JSON), Pos: last.Pos}
		}
		out.After = vis.Filter(rows)
	}
	// "The state of the room at the last event returned" (spec): the last
	// visible one, so a user who left sees no state from after leaving.
	statePos := ev.Pos
	if len(out.After) > 0 {
		statePos = out.After[len(out.After)-1].Pos
	}
	out.State, err = s.StateAt(ctx, req.RoomID, statePos)
	if err != nil {
		return nil, err
	}
	return out, nil
}
