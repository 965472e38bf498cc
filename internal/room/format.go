package room

import (
	"context"
	"encoding/json"
	"strconv"

	"conclave/internal/event"
	"conclave/internal/store"
)

// ClientEvents formats stored events for a client (Client-Server API
// "ClientEvent"): redacted events are served redacted with
// unsigned.redacted_because; state events carry unsigned.prev_content and
// replaces_state; the sender's own device sees unsigned.transaction_id; every
// event carries unsigned.age. Lookups for all events are batched.
func (s *Service) ClientEvents(ctx context.Context, rows []store.StoredEvent, userID, deviceID string, withRoomID bool) ([]json.RawMessage, error) {
	return s.ClientEventsKnowing(ctx, rows, userID, deviceID, withRoomID, nil)
}

// ClientEventsKnowing is ClientEvents for a caller that already holds the
// user's current membership row in the events' room: when every event is at
// or after that membership's position, the membership at each event is the
// current one and the membership history is not queried (the /sync hot path).
func (s *Service) ClientEventsKnowing(ctx context.Context, rows []store.StoredEvent, userID, deviceID string, withRoomID bool, current *store.Membership) ([]json.RawMessage, error) {
	var need []string
	for i := range rows {
		if rows[i].ReplacesState != "" {
			need = append(need, rows[i].ReplacesState)
		}
		if rows[i].RedactedBy != "" {
			need = append(need, rows[i].RedactedBy)
		}
	}
	related := map[string]*store.StoredEvent{}
	if len(need) > 0 {
		found, err := s.store.GetEvents(ctx, need)
		if err != nil {
			return nil, err
		}
		for i := range found {
			related[found[i].EventID] = &found[i]
		}
		// A replaced state event may be one this server has only as an
		// outlier: the state a join through another server brought (the
		// invite it replaces, say), still what prev_content shows.
		var outliers []string
		for i := range rows {
			if id := rows[i].ReplacesState; id != "" && related[id] == nil {
				outliers = append(outliers, id)
			}
		}
		if len(outliers) > 0 {
			pdus, err := s.store.GetPDUs(ctx, outliers)
			if err != nil {
				return nil, err
			}
			for _, p := range pdus {
				if p.Kind == store.KindOutlier {
					related[p.EventID] = &store.StoredEvent{Pos: p.Pos, EventID: p.EventID, RoomID: p.RoomID, JSON: p.JSON}
				}
			}
		}
	}
	bundles, err := s.bundledAggregations(ctx, rows, userID, deviceID, withRoomID)
	if err != nil {
		return nil, err
	}
	// unsigned.membership (spec v1.11): the user's membership at each event,
	// from their membership history in each room (one query per room).
	history := map[string][]posValue{}
	for i := range rows {
		rid := rows[i].RoomID
		if _, ok := history[rid]; ok || userID == "" {
			continue
		}
		if current != nil && current.RoomID == rid && current.UserID == userID && allFrom(rows, rid, current.Pos) {
			history[rid] = []posValue{{current.Pos, current.Membership}}
			continue
		}
		mem, err := s.store.StateEventsOf(ctx, rid, "m.room.member", userID)
		if err != nil {
			return nil, err
		}
		h := make([]posValue, 0, len(mem))
		for _, e := range mem {
			h = append(h, posValue{e.Pos, e.Membership})
		}
		history[rid] = h
	}
	now := s.now().UnixMilli()
	out := make([]json.RawMessage, 0, len(rows))
	for i := range rows {
		membership := ""
		if userID != "" {
			membership = before(history[rows[i].RoomID], rows[i].Pos+1)
			if membership == "" {
				membership = "leave"
			}
		}
		b, err := s.clientEvent(ctx, &rows[i], related, bundles[rows[i].EventID], userID, deviceID, withRoomID, now, membership)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// allFrom reports whether every event of room rid in rows is at or after pos.
func allFrom(rows []store.StoredEvent, rid string, pos int64) bool {
	for i := range rows {
		if rows[i].RoomID == rid && rows[i].Pos < pos {
			return false
		}
	}
	return true
}

func (s *Service) clientEvent(ctx context.Context, se *store.StoredEvent, related map[string]*store.StoredEvent, relations []byte, userID, deviceID string, withRoomID bool, now int64, membership string) (json.RawMessage, error) {
	pdu, err := s.Event(ctx, se)
	if err != nil {
		return nil, err
	}
	var unsigned []byte
	unsigned = append(unsigned, `{"age":`...)
	unsigned = strconv.AppendInt(unsigned, max(0, now-pdu.OriginServerTS), 10)
	if membership != "" {
		unsigned = append(unsigned, `,"membership":`...)
		unsigned = appendJSONString(unsigned, membership)
	}
	if se.TxnID != "" && se.Sender == userID && se.SenderDevice == deviceID {
		unsigned = append(unsigned, `,"transaction_id":`...)
		unsigned = appendJSONString(unsigned, se.TxnID)
	}
	if prev := related[se.ReplacesState]; se.ReplacesState != "" && prev != nil {
		if pp, err := s.Event(ctx, prev); err == nil {
			content := pp.Content
			if prev.RedactedBy != "" {
				if red, err := pp.Redacted(); err == nil {
					content = red.Content
				}
			}
			unsigned = append(unsigned, `,"prev_content":`...)
			unsigned = append(unsigned, content...)
			unsigned = append(unsigned, `,"replaces_state":`...)
			unsigned = appendJSONString(unsigned, se.ReplacesState)
			unsigned = append(unsigned, `,"prev_sender":`...)
			unsigned = appendJSONString(unsigned, pp.Sender)
		}
	}
	if se.RedactedBy != "" {
		red, err := pdu.Redacted()
		if err != nil {
			return nil, err
		}
		pdu = red
		if because := related[se.RedactedBy]; because != nil {
			bp, err := s.Event(ctx, because)
			if err == nil {
				unsigned = append(unsigned, `,"redacted_because":`...)
				unsigned = event.AppendClientEvent(unsigned, bp, nil)
			}
		}
	}
	if relations != nil {
		unsigned = append(unsigned, `,"m.relations":`...)
		unsigned = append(unsigned, relations...)
	}
	unsigned = append(unsigned, '}')
	if withRoomID {
		return event.AppendClientEvent(nil, pdu, unsigned), nil
	}
	return event.AppendClientEventWithoutRoomID(nil, pdu, unsigned), nil
}

func appendJSONString(dst []byte, s string) []byte {
	b, _ := json.Marshal(s)
	return append(dst, b...)
}
