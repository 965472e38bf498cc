package room

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"conclave/internal/authrules"
	"conclave/internal/event"
	"conclave/internal/store"
)

// Backfilled history. A room this server joined through another server
// starts here with the join: what came before it is known only as the
// send_join answer's state and auth chain (outliers). When a client pages
// back past the join, internal/federation asks a server in the room for the
// events before (Server-Server API, "Backfilling and retrieving missing
// events") and hands them here. Each is checked against its auth events
// (signatures and hashes were checked by the caller) and stored as
// KindBackfilled: at negative positions running down as history goes back,
// so /messages pages from the timeline into them in order (depth order
// within a batch, each batch older than the one before) and /sync, which
// reads positive positions, never presents them as new. They have no state
// group: nothing is resolved for them, and the room's current state and
// forward extremities are not touched.

// backfillScan is how many of the room's earliest events are looked at for
// prev events this server does not have.
const backfillScan = 20

// maxBackfillPoints bounds the events a backfill request starts from.
const maxBackfillPoints = 5

// BackfillPoints returns the events to backfill the room from: prev events
// of its earliest timeline and backfilled events that this server does not
// have in its history (unknown, or known only as outliers). None when the
// history here reaches the room's creation.
func (s *Service) BackfillPoints(ctx context.Context, roomID string) ([]string, error) {
	rv, err := s.RoomVersion(ctx, roomID)
	if err != nil {
		return nil, err
	}
	early, err := s.store.EarliestEvents(ctx, roomID, backfillScan)
	if err != nil || len(early) == 0 {
		return nil, err
	}
	ids := make([]string, len(early))
	for i := range early {
		ids[i] = early[i].EventID
	}
	found, err := s.graphEvents(ctx, rv, ids)
	if err != nil {
		return nil, err
	}
	var prevs []string
	for _, id := range ids {
		if g := found[id]; g != nil {
			for _, p := range g.pdu.PrevEvents {
				if !slices.Contains(prevs, p) {
					prevs = append(prevs, p)
				}
			}
		}
	}
	if len(prevs) == 0 {
		return nil, nil
	}
	have, err := s.store.GetPDUs(ctx, prevs)
	if err != nil {
		return nil, err
	}
	kinds := make(map[string]int, len(have))
	for _, p := range have {
		kinds[p.EventID] = p.Kind
	}
	var out []string
	for _, p := range prevs {
		if k, ok := kinds[p]; !ok || k == store.KindOutlier {
			out = append(out, p)
			if len(out) == maxBackfillPoints {
				break
			}
		}
	}
	return out, nil
}

// ImportBackfill stores events another server gave for the room's history
// (their signatures and content hashes checked by the caller): each checked
// against its auth events, which must be stored here or among the events
// given (an event whose auth events are unknown is left out; one an auth
// event of which was rejected, or that its auth events do not allow, is
// stored rejected). Events this server already has in its history are left
// as they are. It returns how many events joined the history.
func (s *Service) ImportBackfill(ctx context.Context, roomID string, pdus []*event.PDU) (int, error) {
	rv, err := s.RoomVersion(ctx, roomID)
	if err != nil {
		return 0, err
	}
	create, err := s.CurrentStateEvent(ctx, roomID, "m.room.create", "")
	if err != nil {
		return 0, err
	}
	if create == nil {
		return 0, fmt.Errorf("room: %s has no create event", roomID)
	}
	pdus = slices.Clone(pdus)
	slices.SortStableFunc(pdus, func(a, b *event.PDU) int {
		switch {
		case a.Depth < b.Depth:
			return -1
		case a.Depth > b.Depth:
			return 1
		}
		return 0
	})
	var ids []string
	for _, p := range pdus {
		if p.Version == nil || p.Version.ID != rv.ID || p.RoomID != roomID {
			return 0, fmt.Errorf("room: backfilled event %s is not of room %s (version %s)", p.EventID, roomID, rv.ID)
		}
		ids = append(append(ids, p.EventID), p.AuthEvents...)
	}
	known, err := s.graphEvents(ctx, rv, ids)
	if err != nil {
		return 0, err
	}
	// Events of this batch, as decided: accepted (usable as auth events by
	// later ones) or rejected.
	accepted := map[string]*event.PDU{}
	rejected := map[string]bool{}
	var rows []store.BackfillEvent
	v := receivedVerifier{}
	for _, p := range pdus {
		if g := known[p.EventID]; (g != nil && g.kind != store.KindOutlier) || accepted[p.EventID] != nil || rejected[p.EventID] {
			continue
		}
		row := receivedRow(&roomState{roomID: roomID}, p, nil)
		auth := make([]*event.PDU, 0, len(p.AuthEvents))
		reason, missing := "", false
		for _, id := range p.AuthEvents {
			if a := accepted[id]; a != nil {
				auth = append(auth, a)
				continue
			}
			g := known[id]
			switch {
			case rejected[id] || (g != nil && g.kind == store.KindRejected):
				reason = "auth event " + id + " was rejected"
			case g == nil:
				missing = true
			default:
				auth = append(auth, g.pdu)
			}
		}
		if missing {
			continue
		}
		if reason == "" {
			if err := authrules.CheckAgainstAuthEvents(p, auth, create, v); err != nil {
				reason = "not allowed by its auth events: " + err.Error()
			}
		}
		if reason != "" {
			rejected[p.EventID] = true
			rows = append(rows, store.BackfillEvent{Event: row, Rejected: true, RejectedReason: reason})
			continue
		}
		accepted[p.EventID] = p
		rows = append(rows, store.BackfillEvent{Event: row})
	}
	slices.Reverse(rows) // newest first: the oldest takes the lowest position
	n, err := s.store.PersistBackfill(ctx, roomID, rows)
	if err != nil {
		return 0, err
	}
	for _, p := range accepted {
		s.parsed.put(p)
	}
	return n, nil
}

// MissingPrevs returns the prev events of rows (a page of the room's
// history) that are neither among rows nor in the room's history here
// (unknown, or known only as outliers): gaps a client paging back meets,
// where backfilling can fill in (a server that left the room and joined it
// again missed what was said meanwhile).
func (s *Service) MissingPrevs(ctx context.Context, roomID string, rows []store.StoredEvent) ([]string, error) {
	in := make(map[string]bool, len(rows))
	for i := range rows {
		in[rows[i].EventID] = true
	}
	var prevs []string
	for i := range rows {
		for _, p := range PrevEventsOf(rows[i].JSON) {
			if !in[p] && !slices.Contains(prevs, p) {
				prevs = append(prevs, p)
			}
		}
	}
	if len(prevs) == 0 {
		return nil, nil
	}
	return s.NotInHistory(ctx, prevs)
}

// NotInHistory returns those of ids (at most maxBackfillPoints) that are
// not in the room's history here: unknown, or known only as outliers.
func (s *Service) NotInHistory(ctx context.Context, ids []string) ([]string, error) {
	have, err := s.store.GetPDUs(ctx, ids)
	if err != nil {
		return nil, err
	}
	kinds := make(map[string]int, len(have))
	for _, p := range have {
		kinds[p.EventID] = p.Kind
	}
	var out []string
	for _, id := range ids {
		if k, ok := kinds[id]; !ok || k == store.KindOutlier {
			out = append(out, id)
			if len(out) == maxBackfillPoints {
				break
			}
		}
	}
	return out, nil
}

// PrevEventsOf reads prev_events from a stored PDU: event IDs from room
// version 3 on, [event ID, hashes] pairs before.
func PrevEventsOf(pdu []byte) []string {
	var e struct {
		PrevEvents []json.RawMessage `json:"prev_events"`
	}
	if json.Unmarshal(pdu, &e) != nil {
		return nil
	}
	out := make([]string, 0, len(e.PrevEvents))
	for _, raw := range e.PrevEvents {
		var id string
		if json.Unmarshal(raw, &id) != nil {
			var pair []json.RawMessage
			if json.Unmarshal(raw, &pair) != nil || len(pair) == 0 || json.Unmarshal(pair[0], &id) != nil {
				continue
			}
		}
		out = append(out, id)
	}
	return out
}

// DepthOf reads depth from a stored PDU.
func DepthOf(pdu []byte) int64 {
	var e struct {
		Depth int64 `json:"depth"`
	}
	json.Unmarshal(pdu, &e)
	return e.Depth
}
