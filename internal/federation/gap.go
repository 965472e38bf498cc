package federation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"conclave/internal/event"
	"conclave/internal/fedclient"
	"conclave/internal/room"
)

// Gaps: a received event citing events this server does not have. First
// the events between the room's forward extremities and it are asked of the
// sender (/get_missing_events, bounded); when that cannot close the gap
// (the server was away longer than it reaches), the state at the missing
// prev events is asked instead (/state_ids, then /event or /state for the
// events named that this server lacks), and the event is taken with that
// state before it (Server-Server API, "Receiving PDUs" and "Retrieving
// events"; Synapse's _get_state_ids_after_missing_prev_event).

// The bounds of fetching the state at missing prev events: the prev events
// of one event asked about, the state and auth chain events one answer may
// name, the events fetched one by one (/event, a few at a time) before one
// /state is cheaper.
const (
	stateAtMaxPrevs   = 10
	stateAtMaxIDs     = 100_000
	stateAtOneByOne   = 50
	stateAtInParallel = 8
)

// receiveAfterGap fills the gap before pdu (it cited events this server
// does not have) and gives it to the room writer again.
func (s *Service) receiveAfterGap(ctx context.Context, origin string, pdu *event.PDU, first *room.MissingEventsError) error {
	if !citesAny(pdu.PrevEvents, first.Events) {
		// Only auth events are missing: there is no gap to fill, only
		// those events (and their own auth events) to fetch.
		_, err := s.receiveWithAuthEvents(ctx, origin, pdu, first.Events)
		return s.pduError(pdu, origin, err)
	}
	var missing *room.MissingEventsError
	for round := 0; round < missingEventsRounds; round++ {
		if ferr := s.fillGap(ctx, origin, pdu); ferr != nil {
			s.Log.Debug("federation: get_missing_events", "event", pdu.EventID, "origin", origin, "err", ferr)
			break
		}
		_, err := s.Rooms.Receive(ctx, pdu)
		if !errors.As(err, &missing) {
			return s.pduError(pdu, origin, err)
		}
		if !citesAny(pdu.PrevEvents, missing.Events) {
			break // the gap is closed; only auth events are missing
		}
	}
	if missing == nil {
		_, err := s.Rooms.Receive(ctx, pdu)
		if !errors.As(err, &missing) {
			return s.pduError(pdu, origin, err)
		}
	}
	// The event was pushed to us and its sender could not give what lies
	// between: it is refused, not taken with the state at its prev events
	// (only events pulled through get_missing_events are, in fillGap) —
	// as Synapse does: a pushed event whose prev events its server does
	// not divulge could otherwise become the room's only extremity and its
	// claimed state the room's (Complement's
	// TestOutboundFederationIgnoresMissingEventWithBadJSONForRoomVersion6
	// fails on a /state_ids request here).
	if !citesAny(pdu.PrevEvents, missing.Events) {
		// Its prev events are here now; auth events it cites are not
		// (one that failed its own checks while the gap was filled): they
		// are fetched, and the event rejected if they cannot be had
		// (Complement's TestCorruptedAuthChain).
		_, err := s.receiveWithAuthEvents(ctx, origin, pdu, missing.Events)
		return s.pduError(pdu, origin, err)
	}
	return s.pduError(pdu, origin, missing)
}

func citesAny(ids, among []string) bool {
	for _, id := range ids {
		if slices.Contains(among, id) {
			return true
		}
	}
	return false
}

// authFetchRounds bounds how deep receiveWithAuthEvents follows auth events
// of fetched auth events; authFetchMax bounds the events it fetches.
const (
	authFetchRounds = 3
	authFetchMax    = 50
)

// receiveWithAuthEvents fetches from origin (/event) the auth events of pdu
// this server lacks, and theirs in turn (bounded), and hands pdu to the room
// writer with them: they are checked and kept as outliers, and pdu is
// rejected if one of its auth events could not be had
// (room.Service.ReceiveWithState). An auth event citing a rejected event
// fails its checks, so an event citing it is rejected too.
func (s *Service) receiveWithAuthEvents(ctx context.Context, origin string, pdu *event.PDU, missing []string) (room.Received, error) {
	fetched := map[string]*event.PDU{}
	want := missing
	for round := 0; round < authFetchRounds && len(want) > 0 && len(fetched) < authFetchMax; round++ {
		if len(want) > authFetchMax-len(fetched) {
			want = want[:authFetchMax-len(fetched)]
		}
		if err := s.fetchEvents(ctx, origin, pdu.Version, pdu.RoomID, pdu.EventID, want, fetched); err != nil {
			return room.Received{}, err
		}
		var next []string
		for _, id := range want {
			if ev := fetched[id]; ev != nil {
				next = append(next, ev.AuthEvents...)
			}
		}
		have, err := s.Rooms.Events(ctx, pdu.RoomID, next)
		if err != nil {
			return room.Received{}, err
		}
		known := map[string]bool{}
		for _, ev := range have {
			known[ev.EventID] = true
		}
		want = nil
		for _, id := range next {
			if !known[id] && fetched[id] == nil && !slices.Contains(want, id) {
				want = append(want, id)
			}
		}
	}
	events := make([]*event.PDU, 0, len(fetched))
	for _, ev := range fetched {
		events = append(events, ev)
	}
	return s.Rooms.ReceiveWithState(ctx, pdu, nil, events)
}

// fillGap asks origin for the events between the room's forward extremities
// and pdu (/get_missing_events) and receives them oldest first. The oldest
// of them that still lacks prev events is taken with the state at those
// (receiveWithStateAt), so the rest follow it.
func (s *Service) fillGap(ctx context.Context, origin string, pdu *event.PDU) error {
	exts, err := s.Rooms.Extremities(ctx, pdu.RoomID)
	if err != nil {
		return err
	}
	raws, err := s.Client.GetMissingEvents(ctx, origin, pdu.RoomID, fedclient.MissingEventsRequest{
		EarliestEvents: exts, LatestEvents: []string{pdu.EventID}, Limit: missingEventsLimit})
	if err != nil {
		return err
	}
	if len(raws) > missingEventsLimit {
		raws = raws[:missingEventsLimit]
	}
	var got []*event.PDU
	for _, raw := range raws {
		ev, err := s.checkPDU(ctx, pdu.Version, raw)
		if err != nil || event.RoomIDForCreate(ev) != pdu.RoomID || ev.EventID == pdu.EventID {
			continue // a bad event is left out; what cites it stays missing
		}
		got = append(got, ev)
	}
	if len(got) == 0 {
		return errors.New("the sender returned none of them")
	}
	slices.SortStableFunc(got, func(a, b *event.PDU) int {
		if a.Depth != b.Depth {
			return int(a.Depth - b.Depth)
		}
		return 0
	})
	stateAsked := false
	for _, ev := range got {
		_, err := s.Rooms.Receive(ctx, ev)
		var missing *room.MissingEventsError
		if errors.As(err, &missing) && !stateAsked {
			stateAsked = true
			_, err = s.receiveWithStateAt(ctx, origin, ev, missing.Events)
			if errors.As(err, &missing) {
				continue
			}
		}
		if err != nil && !errors.As(err, &missing) {
			return err
		}
	}
	return nil
}

// receiveWithStateAt asks origin for the state at pdu's missing prev events
// and the events of it this server lacks, and hands pdu to the room writer
// with them (room.Service.ReceiveWithState).
func (s *Service) receiveWithStateAt(ctx context.Context, origin string, pdu *event.PDU, missing []string) (room.Received, error) {
	var prevIDs []string
	for _, id := range missing {
		if slices.Contains(pdu.PrevEvents, id) && len(prevIDs) < stateAtMaxPrevs {
			prevIDs = append(prevIDs, id)
		}
	}
	if len(prevIDs) == 0 {
		return s.receiveWithAuthEvents(ctx, origin, pdu, missing)
	}
	rv := pdu.Version
	fetched := map[string]*event.PDU{}
	var prevs []room.MissingPrev
	for _, id := range prevIDs {
		ids, err := s.Client.GetStateIDs(ctx, origin, pdu.RoomID, id)
		if err != nil {
			return room.Received{}, fmt.Errorf("asking the state at %s: %w", id, err)
		}
		if len(ids.PDUIDs)+len(ids.AuthChainIDs) > stateAtMaxIDs {
			return room.Received{}, fmt.Errorf("the state at %s is too large", id)
		}
		want := append(append([]string{id}, ids.PDUIDs...), ids.AuthChainIDs...)
		want = append(want, pdu.AuthEvents...)
		have, err := s.Rooms.Events(ctx, pdu.RoomID, want)
		if err != nil {
			return room.Received{}, err
		}
		known := make(map[string]bool, len(have))
		for _, ev := range have {
			known[ev.EventID] = true
		}
		var lack []string
		for _, w := range want {
			if !known[w] && fetched[w] == nil && !slices.Contains(lack, w) {
				lack = append(lack, w)
			}
		}
		if err := s.fetchEvents(ctx, origin, rv, pdu.RoomID, id, lack, fetched); err != nil {
			return room.Received{}, err
		}
		// A prev event that could not be fetched is cited without being
		// stored; the state before it still counts.
		prevs = append(prevs, room.MissingPrev{EventID: id, StateBefore: ids.PDUIDs})
	}
	events := make([]*event.PDU, 0, len(fetched))
	for _, ev := range fetched {
		events = append(events, ev)
	}
	return s.Rooms.ReceiveWithState(ctx, pdu, prevs, events)
}

// fetchEvents fetches the events ids of a room from origin into fetched,
// each checked (checkPDU; a bad one is left out): one by one with /event
// when they are few, else with one /state at the event at (whose answer
// holds the state before it and the auth chain), plus /event for the ones
// it did not hold.
func (s *Service) fetchEvents(ctx context.Context, origin string, rv *event.RoomVersion, roomID, at string, ids []string, fetched map[string]*event.PDU) error {
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	take := func(raw []byte) {
		ev, err := s.checkPDU(ctx, rv, raw)
		if err != nil || ev.RoomID != roomID || !want[ev.EventID] {
			return
		}
		fetched[ev.EventID] = ev
	}
	if len(ids) > stateAtOneByOne {
		st, err := s.Client.GetState(ctx, origin, roomID, at)
		if err != nil {
			return fmt.Errorf("asking the state at %s: %w", at, err)
		}
		if len(st.PDUs)+len(st.AuthChain) > stateAtMaxIDs {
			return fmt.Errorf("the state at %s is too large", at)
		}
		for _, raw := range append(st.PDUs, st.AuthChain...) {
			take(raw)
		}
		var rest []string
		for _, id := range ids {
			if fetched[id] == nil {
				rest = append(rest, id)
			}
		}
		ids = rest
		if len(ids) > stateAtOneByOne {
			return fmt.Errorf("the state at %s lacks %d of its events", at, len(ids))
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, stateAtInParallel)
	for _, id := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func(id string) {
			defer func() { <-sem; wg.Done() }()
			t, err := s.Client.GetEvent(ctx, origin, id)
			if err != nil || len(t.PDUs) != 1 {
				return // left out: what needs it fails its checks
			}
			ev, err := s.checkPDU(ctx, rv, t.PDUs[0])
			if err != nil || ev.RoomID != roomID || ev.EventID != id {
				return
			}
			mu.Lock()
			fetched[id] = ev
			mu.Unlock()
		}(id)
	}
	wg.Wait()
	return nil
}
