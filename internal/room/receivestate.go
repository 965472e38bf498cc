package room

import (
	"context"
	"errors"
	"slices"

	"conclave/internal/authrules"
	"conclave/internal/event"
	"conclave/internal/matrix"
	"conclave/internal/store"
)

// Events after a gap /get_missing_events could not close (Server-Server
// API, "Receiving PDUs": when prev events are missing and cannot be
// fetched with their history, the receiving server asks for the state at
// them, /state_ids, and takes the event with that state before it; Synapse
// does the same in _get_state_ids_after_missing_prev_event). The missing
// prev events are kept as outliers: the timeline has a hole there, which
// backfill may fill later.

// MissingPrev is a prev event this server lacks, with the room state before
// it as another server answered /state_ids (event IDs). The event itself is
// among ReceiveWithState's events if it could be fetched.
type MissingPrev struct {
	EventID     string
	StateBefore []string
}

// ReceiveWithState takes an event some of whose prev events this server
// lacks (prevs), with the state before each as another server told it.
// events holds every event the caller fetched for it (the missing prev
// events, state and auth chain events this server did not have), parsed
// for the room's version with signatures and hashes checked. They are
// checked against their own auth events (in auth order; one that fails or
// cannot be checked is left out, as in ImportJoin) and stored as outliers;
// the state after a missing prev event is the state before it (what passed)
// and itself (if it passed; else it is left out, as Synapse leaves out
// state events it could not check). The event is then received as Receive
// does, the state before it being the resolution of its prev events'
// states — rejected if one of its auth events could not be had (fetched and
// checked): the auth rules cannot pass without it, and the caller asked for
// it already.
func (s *Service) ReceiveWithState(ctx context.Context, pdu *event.PDU, prevs []MissingPrev, events []*event.PDU) (Received, error) {
	roomID, rv := pdu.RoomID, pdu.Version
	if rv == nil {
		return Received{}, errors.New("room: an event without a room version")
	}
	all := make(map[string]*event.PDU, len(events))
	for _, ev := range events {
		if ev.RoomID != roomID {
			return Received{}, matrix.Forbidden("The state of the missing events holds an event of another room")
		}
		if ev.EventID != pdu.EventID {
			all[ev.EventID] = ev
		}
	}
	var ids []string
	ids = append(ids, pdu.AuthEvents...)
	for _, p := range prevs {
		ids = append(append(ids, p.EventID), p.StateBefore...)
	}
	for _, ev := range all {
		ids = append(ids, ev.AuthEvents...)
	}
	if len(all) > maxAuthChain || len(ids) > 4*maxAuthChain {
		return Received{}, matrix.Forbidden("The state of the missing events is too large")
	}
	stored, err := s.graphEvents(ctx, rv, ids)
	if err != nil {
		return Received{}, err
	}
	trusted := map[string]*event.PDU{}
	for id, g := range stored {
		delete(all, id) // known already: not checked nor stored again
		if g.kind != store.KindRejected && g.pdu.RoomID == roomID {
			trusted[id] = g.pdu
		}
	}
	valid := checkAuthOrderWith(rv, all, trusted)
	usable := func(id string) *event.PDU {
		if valid[id] {
			return all[id]
		}
		return trusted[id]
	}
	given := make(map[string]StateMap, len(prevs))
	for _, p := range prevs {
		if !slices.Contains(pdu.PrevEvents, p.EventID) {
			continue
		}
		prev := usable(p.EventID)
		st := make(StateMap, len(p.StateBefore)+1)
		for _, id := range p.StateBefore {
			ev := usable(id)
			if ev == nil || ev.StateKey == nil {
				continue
			}
			k := authrules.StateKey{Type: ev.Type, StateKey: *ev.StateKey}
			if _, dup := st[k]; dup {
				return Received{}, matrix.Forbidden("The state before %s holds %s %q twice", p.EventID, ev.Type, *ev.StateKey)
			}
			st[k] = id
		}
		if _, ok := st[authrules.StateKey{Type: "m.room.create"}]; !ok {
			return Received{}, matrix.Forbidden("The state before %s has no valid m.room.create event", p.EventID)
		}
		if prev != nil && prev.StateKey != nil {
			st[authrules.StateKey{Type: prev.Type, StateKey: *prev.StateKey}] = prev.EventID
		}
		given[p.EventID] = st
	}
	var lacking string
	for _, id := range pdu.AuthEvents {
		if _, rejected := stored[id]; usable(id) == nil && !rejected {
			lacking = id
			break
		}
	}
	var outliers []store.NewEvent
	for id, ev := range all {
		if valid[id] {
			outliers = append(outliers, receivedRow(&roomState{roomID: roomID}, ev, nil))
		}
	}
	slices.SortFunc(outliers, func(a, b store.NewEvent) int {
		if a.Depth != b.Depth {
			return int(a.Depth - b.Depth)
		}
		return compareStrings(a.EventID, b.EventID)
	})
	var out Received
	err = s.retry(ctx, roomID, func() error {
		e, rs, err := s.lock(ctx, roomID)
		if err != nil {
			return err
		}
		defer s.unlock(e)
		if err := s.store.PersistOutliers(ctx, outliers); err != nil {
			return err
		}
		if lacking != "" {
			if known, err := s.graphEvents(ctx, rv, []string{pdu.EventID}); err != nil || known[pdu.EventID] != nil {
				out = Received{Outcome: AlreadyKnown}
				return err
			}
			out, err = s.reject(ctx, rs, pdu, "auth event "+lacking+" could not be fetched or failed its checks")
			return err
		}
		out, err = s.receiveLockedWith(ctx, rs, pdu, given)
		return err
	})
	return out, err
}
