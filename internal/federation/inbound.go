package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	"conclave/internal/authrules"
	"conclave/internal/event"
	"conclave/internal/fedclient"
	"conclave/internal/lru"
	"conclave/internal/matrix"
	"conclave/internal/room"
)

// The limits of one transaction (Server-Server API, "Transactions").
const (
	MaxTxnPDUs = 50
	MaxTxnEDUs = 100
)

// Gap filling: how many missing events one /get_missing_events asks for,
// and how many rounds of it one received event may cause.
const (
	missingEventsLimit  = 20
	missingEventsRounds = 3
)

// txnsKept bounds the transaction answers remembered for retries.
const txnsKept = 10_000

// roomsInParallel bounds the rooms of one transaction processed at once.
const roomsInParallel = 8

// EDUHandler takes the EDUs of a transaction (typing, receipts, device
// lists, to-device…); nil: they are ignored.
type EDUHandler func(ctx context.Context, origin, eduType string, content json.RawMessage)

type transaction struct {
	Origin         string            `json:"origin"`
	OriginServerTS int64             `json:"origin_server_ts"`
	PDUs           []json.RawMessage `json:"pdus"`
	EDUs           []struct {
		Type    string          `json:"edu_type"`
		Content json.RawMessage `json:"content"`
	} `json:"edus"`
}

// Transaction processes PUT /_matrix/federation/v1/send/{txnId} from an
// authenticated origin and returns the answer: {"pdus": {event ID: {} or
// {"error": …}}}. One bad PDU never fails the transaction. The same origin
// and transaction ID again gets the same answer without processing anything
// (a retry of a transaction whose answer was lost).
func (s *Service) Transaction(ctx context.Context, origin, txnID string, body []byte, edus EDUHandler) (json.RawMessage, error) {
	key := origin + "\x00" + txnID
	unlock := s.lockTxn(key)
	defer unlock()
	if answer, ok := s.answers().Get(key); ok {
		return answer, nil
	}
	var t transaction
	if err := json.Unmarshal(body, &t); err != nil {
		return nil, matrix.BadJSON("The transaction is not valid: %s", err.Error())
	}
	if len(t.PDUs) > MaxTxnPDUs || len(t.EDUs) > MaxTxnEDUs {
		return nil, matrix.BadJSON("A transaction holds at most %d PDUs and %d EDUs", MaxTxnPDUs, MaxTxnEDUs)
	}
	results := make(map[string]any, len(t.PDUs))
	var mu sync.Mutex
	// The PDUs of one room in the order sent; rooms side by side (their
	// writes then share commits).
	var order []string
	byRoom := map[string][]json.RawMessage{}
	for _, raw := range t.PDUs {
		var head struct {
			RoomID string `json:"room_id"`
		}
		json.Unmarshal(raw, &head)
		if _, ok := byRoom[head.RoomID]; !ok {
			order = append(order, head.RoomID)
		}
		byRoom[head.RoomID] = append(byRoom[head.RoomID], raw)
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, roomsInParallel)
	for _, roomID := range order {
		wg.Add(1)
		sem <- struct{}{}
		go func(pdus []json.RawMessage) {
			defer func() { <-sem; wg.Done() }()
			for _, raw := range pdus {
				id, err := s.receivePDU(ctx, origin, raw)
				if id == "" {
					continue // no event ID to answer for (unknown room, unparseable)
				}
				mu.Lock()
				if err != nil {
					results[id] = map[string]string{"error": err.Error()}
				} else {
					results[id] = struct{}{}
				}
				mu.Unlock()
			}
		}(byRoom[roomID])
	}
	wg.Wait()
	if edus != nil {
		for _, e := range t.EDUs {
			edus(ctx, origin, e.Type, e.Content)
		}
	}
	answer, err := json.Marshal(map[string]any{"pdus": results})
	if err != nil {
		return nil, err
	}
	s.answers().Put(key, answer)
	return answer, nil
}

func (s *Service) answers() *lru.Cache[string, json.RawMessage] {
	s.txnOnce.Do(func() { s.txns = lru.New[string, json.RawMessage](txnsKept) })
	return s.txns
}

// lockTxn serialises the processing of one (origin, transaction ID).
func (s *Service) lockTxn(key string) func() {
	s.inflightMu.Lock()
	if s.inflight == nil {
		s.inflight = map[string]*sync.Mutex{}
	}
	m := s.inflight[key]
	if m == nil {
		m = &sync.Mutex{}
		s.inflight[key] = m
	}
	s.inflightMu.Unlock()
	m.Lock()
	return func() {
		m.Unlock()
		s.inflightMu.Lock()
		if s.inflight[key] == m && m.TryLock() {
			delete(s.inflight, key)
			m.Unlock()
		}
		s.inflightMu.Unlock()
	}
}

// receivePDU checks one PDU of a transaction and hands it to the room
// writer, filling a gap before it from origin when it cites events this
// server does not have. It returns the event ID ("" when there is none to
// answer for) and why the PDU was not taken.
func (s *Service) receivePDU(ctx context.Context, origin string, raw json.RawMessage) (string, error) {
	var head struct {
		RoomID string `json:"room_id"`
	}
	if json.Unmarshal(raw, &head) != nil || head.RoomID == "" {
		return "", nil
	}
	rv, err := s.Rooms.RoomVersion(ctx, head.RoomID)
	if err != nil {
		// A room this server is not in: only a change to a local user's
		// invite or knock there concerns it (an invite rescinded).
		return s.receiveOutOfRoom(ctx, origin, head.RoomID, raw)
	}
	pdu, err := s.checkPDU(ctx, rv, raw)
	if err != nil {
		if pdu != nil {
			return pdu.EventID, err
		}
		return "", nil
	}
	if pdu.RoomID != head.RoomID {
		return pdu.EventID, errors.New("room_id mismatch")
	}
	if !s.Rooms.ServerAllowed(ctx, pdu.RoomID, origin) {
		// m.room.server_acl applies to every PDU a server sends.
		return pdu.EventID, errors.New("this server is denied by the room's server ACL")
	}
	for round := 0; ; round++ {
		got, err := s.Rooms.Receive(ctx, pdu)
		var missing *room.MissingEventsError
		if errors.As(err, &missing) && round < missingEventsRounds {
			if ferr := s.fillGap(ctx, origin, rv, pdu); ferr != nil {
				return pdu.EventID, fmt.Errorf("missing prev or auth events, and fetching them failed: %w", ferr)
			}
			continue
		}
		if err != nil {
			if errors.As(err, &missing) {
				return pdu.EventID, err
			}
			if me, ok := matrix.AsError(err); ok {
				return pdu.EventID, me
			}
			s.Log.Error("federation: receiving an event", "event", pdu.EventID, "origin", origin, "err", err)
			return pdu.EventID, errors.New("internal error")
		}
		// Rejected and soft-failed events are processed events: the
		// spec's per-PDU errors are for PDUs that could not be processed.
		_ = got
		return pdu.EventID, nil
	}
}

// receiveOutOfRoom takes a membership event for a room this server is not
// in, about a local user invited or knocking there: the inviter rescinding
// the invite (a kick or ban), or the room taking a knock back. Anything
// else is not this server's business and is dropped.
func (s *Service) receiveOutOfRoom(ctx context.Context, origin, roomID string, raw json.RawMessage) (string, error) {
	var head struct {
		Type     string `json:"type"`
		StateKey string `json:"state_key"`
	}
	if json.Unmarshal(raw, &head) != nil || head.Type != "m.room.member" || matrix.ServerOf(head.StateKey) != s.ServerName {
		return "", nil
	}
	rm, err := s.Rooms.RemoteMembership(ctx, roomID, head.StateKey)
	if err != nil || rm == nil || (rm.Membership != "invite" && rm.Membership != "knock") {
		return "", nil
	}
	rv, ok := event.GetRoomVersion(rm.RoomVersion)
	if !ok {
		return "", nil
	}
	pdu, err := s.checkPDU(ctx, rv, raw)
	if err != nil {
		if pdu != nil {
			return pdu.EventID, err
		}
		return "", nil
	}
	m, err := authrules.Membership(pdu)
	if err != nil || pdu.RoomID != roomID || (m != "leave" && m != "ban" && m != "join" && m != "invite") {
		return pdu.EventID, errors.New("not a membership change this server can take for a room it is not in")
	}
	if m == "join" || m == "invite" {
		return pdu.EventID, nil // a join comes through make_join; a new invite through /invite
	}
	return pdu.EventID, s.Rooms.RecordRemoteMembership(ctx, rv, pdu, m, nil)
}

// checkPDU parses a PDU for its room version and checks its signatures
// (else it is dropped) and content hash (else it is redacted), as the
// Server-Server API's "Checks performed on receipt of a PDU" say (steps 1
// to 3). A PDU that parsed but failed comes back with the error.
func (s *Service) checkPDU(ctx context.Context, rv *event.RoomVersion, raw json.RawMessage) (*event.PDU, error) {
	pdu, err := event.ParsePDU(rv, raw)
	if err != nil {
		return nil, err
	}
	if s.Keys == nil {
		return pdu, errors.New("no keyring: signatures cannot be checked")
	}
	if err := s.Keys.VerifyEvent(ctx, pdu); err != nil {
		return pdu, fmt.Errorf("signature check failed: %w", err)
	}
	if event.CheckContentHash(pdu) != nil {
		red, err := pdu.Redacted()
		if err != nil {
			return pdu, err
		}
		pdu = red
	}
	return pdu, nil
}

// fillGap asks origin for the events between the room's forward extremities
// and pdu (/get_missing_events) and receives them oldest first.
func (s *Service) fillGap(ctx context.Context, origin string, rv *event.RoomVersion, pdu *event.PDU) error {
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
		ev, err := s.checkPDU(ctx, rv, raw)
		if err != nil || event.RoomIDForCreate(ev) != pdu.RoomID {
			continue // a bad event is left out; what cites it stays missing
		}
		got = append(got, ev)
	}
	if len(got) == 0 {
		return errors.New("the sender returned none of them")
	}
	slices.SortFunc(got, func(a, b *event.PDU) int {
		if a.Depth != b.Depth {
			return int(a.Depth - b.Depth)
		}
		return 0
	})
	for _, ev := range got {
		if _, err := s.Rooms.Receive(ctx, ev); err != nil {
			var missing *room.MissingEventsError
			if !errors.As(err, &missing) {
				return err
			}
		}
	}
	return nil
}
