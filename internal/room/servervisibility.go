package room

import (
	"context"
	"encoding/json"
	"strings"

	"conclave/internal/authrules"
	"conclave/internal/event"
	"conclave/internal/store"
)

// History visibility for other servers. A server is treated as the sum of
// its users (Client-Server API, "History visibility": the rules apply "at
// that event"; Server-Server API, "Retrieving events": servers must not be
// given events they may not see). As Synapse does (filter_events_for_server):
//
//   - the state consulted is the state after the event (its state group), so
//     an m.room.history_visibility event is judged by the value it sets;
//   - "world_readable", "shared" (and any value not understood, which the
//     spec reads as "shared") let any server see the event: the server asking
//     has a member in the room now, so it joined after the event;
//   - "invited" and "joined" need one of the server's users joined (or, for
//     "invited", invited) in that state;
//   - an outlier (no state known here) is visible: nothing says otherwise.
//
// An event the server may not see is given redacted, not left out: the
// graph stays whole for the asking server (prev_events, depth, hashes and
// signatures survive redaction), only the content is withheld.

// ForServer returns the events of roomID as server may see them, in the
// same order: each either as it is or redacted.
func (s *Service) ForServer(ctx context.Context, roomID, server string, pdus []*event.PDU) ([]*event.PDU, error) {
	if len(pdus) == 0 {
		return pdus, nil
	}
	rv, err := s.RoomVersion(ctx, roomID)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(pdus))
	for i, p := range pdus {
		ids[i] = p.EventID
	}
	stored, err := s.store.GetPDUs(ctx, ids)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]*store.PDU, len(stored))
	for i := range stored {
		byID[stored[i].EventID] = &stored[i]
	}
	sv := &serverVisibility{s: s, ctx: ctx, rv: rv, roomID: roomID, server: server,
		byGroup: map[int64]bool{}, byPos: map[int64]bool{}}
	out := make([]*event.PDU, len(pdus))
	for i, p := range pdus {
		visible, err := sv.visible(byID[p.EventID])
		if err != nil {
			return nil, err
		}
		if visible {
			out[i] = p
			continue
		}
		red, err := p.Redacted()
		if err != nil {
			return nil, err
		}
		out[i] = red
	}
	return out, nil
}

// serverVisibility decides for one server and one room, remembering the
// answer per state group (many events share one).
type serverVisibility struct {
	s       *Service
	ctx     context.Context
	rv      *event.RoomVersion
	roomID  string
	server  string
	byGroup map[int64]bool
	byPos   map[int64]bool
}

func (v *serverVisibility) visible(p *store.PDU) (bool, error) {
	switch {
	case p != nil && p.Kind == store.KindPurged:
		// Its content is gone (internal/retention); never served whole.
		return false, nil
	case p == nil || p.Kind == store.KindOutlier || p.Kind == store.KindRejected:
		// No state known here at the event (Synapse: outliers are open).
		return true, nil
	case p.StateGroup != 0:
		if ok, done := v.byGroup[p.StateGroup]; done {
			return ok, nil
		}
		st, err := v.s.stateOfGroup(v.ctx, p.StateGroup)
		if err != nil {
			return false, err
		}
		ok, err := v.decide(st)
		v.byGroup[p.StateGroup] = ok
		return ok, err
	case p.Pos > 0:
		// An event from before state groups (migration 0013): the room's
		// linear state at its position.
		if ok, done := v.byPos[p.Pos]; done {
			return ok, nil
		}
		rows, err := v.s.store.StateAt(v.ctx, v.roomID, p.Pos)
		if err != nil {
			return false, err
		}
		st := make(StateMap, len(rows))
		for _, r := range rows {
			if r.StateKey != nil {
				st[authrules.StateKey{Type: r.Type, StateKey: *r.StateKey}] = r.EventID
			}
		}
		ok, err := v.decide(st)
		v.byPos[p.Pos] = ok
		return ok, err
	}
	return true, nil
}

// decide applies the rules to one state.
func (v *serverVisibility) decide(st StateMap) (bool, error) {
	hv := ""
	if id, ok := st[authrules.StateKey{Type: "m.room.history_visibility", StateKey: ""}]; ok {
		found, err := v.s.graphEvents(v.ctx, v.rv, []string{id})
		if err != nil {
			return false, err
		}
		if g := found[id]; g != nil {
			var c struct {
				HistoryVisibility string `json:"history_visibility"`
			}
			json.Unmarshal(g.pdu.Content, &c)
			hv = c.HistoryVisibility
		}
	}
	if hv != "invited" && hv != "joined" {
		return true, nil
	}
	suffix := ":" + v.server
	var members []string
	for k, id := range st {
		if k.Type == "m.room.member" && strings.HasSuffix(k.StateKey, suffix) && strings.IndexByte(k.StateKey, ':') == len(k.StateKey)-len(suffix) {
			members = append(members, id)
		}
	}
	if len(members) == 0 {
		return false, nil
	}
	found, err := v.s.graphEvents(v.ctx, v.rv, members)
	if err != nil {
		return false, err
	}
	for _, g := range found {
		switch membershipOf(g.pdu) {
		case "join":
			return true, nil
		case "invite":
			if hv == "invited" {
				return true, nil
			}
		}
	}
	return false, nil
}
