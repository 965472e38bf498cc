package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"conclave/internal/authrules"
	"conclave/internal/event"
	"conclave/internal/lru"
	"conclave/internal/matrix"
	"conclave/internal/room"
	"conclave/internal/store"
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

// txnsKept bounds the transaction answers remembered in memory for
// retries; the store (Service.Txns) keeps them all for txnsKeptFor, pruned
// every txnsPruneEvery (a sender retries for far less than a day).
const (
	txnsKept       = 10_000
	txnsKeptFor    = 24 * time.Hour
	txnsPruneEvery = time.Hour
)

// roomsInParallel bounds the rooms of one transaction processed at once.
const roomsInParallel = 8

// txnProcessingBound bounds the processing of one inbound transaction,
// whether or not its sender still waits for the answer (Transaction).
// Fetching missing events and state has its own, shorter timeouts.
const txnProcessingBound = 5 * time.Minute

// EDUHandler takes the EDUs of a transaction (typing, receipts, device
// lists, to-device…); nil: they are ignored. An error means the EDU was
// not kept for a reason of this server's (a store error), and must be
// sent again: the transaction then fails (see Transaction).
type EDUHandler func(ctx context.Context, origin, eduType string, content json.RawMessage) error

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
//
// A transaction is processed to its end even when its sender hangs up (its
// timeout fired, it stopped): cancelled half-way, PDUs would be answered
// with "context canceled" errors that the answer cache then gives the retry
// — the sender takes that as delivered and never sends them again — and a
// device list update would be taken for a missed one. txnProcessingBound
// bounds the work instead.
func (s *Service) Transaction(ctx context.Context, origin, txnID string, body []byte, edus EDUHandler) (json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), txnProcessingBound)
	defer cancel()
	key := origin + "\x00" + txnID
	unlock := s.lockTxn(key)
	defer unlock()
	if answer, ok := s.answers().Get(key); ok {
		return answer, nil
	}
	if s.Txns != nil {
		answer, err := s.Txns.FedTxnAnswer(ctx, origin, txnID)
		if err == nil {
			s.answers().Put(key, answer)
			return answer, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			// Processing again is safe (events already stored are known).
			s.Log.Warn("federation: reading a transaction's answer", "origin", origin, "txn", txnID, "err", err)
		}
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
	record := func(id string, err error) {
		if id == "" {
			return // no event ID to answer for (unknown room, unparseable)
		}
		mu.Lock()
		if err != nil {
			results[id] = map[string]string{"error": err.Error()}
		} else {
			results[id] = struct{}{}
		}
		mu.Unlock()
	}
	// Parsing and signature checks first, side by side (the CPU-bound part);
	// then the PDUs of one room in the order sent, rooms side by side (their
	// writes then share commits).
	in := s.checkPDUs(ctx, t.PDUs)
	var order []string
	byRoom := map[string][]*inboundPDU{}
	for _, p := range in {
		if p.skip {
			continue
		}
		if p.err != nil {
			record(p.id, p.err)
			continue
		}
		if _, ok := byRoom[p.roomID]; !ok {
			order = append(order, p.roomID)
		}
		byRoom[p.roomID] = append(byRoom[p.roomID], p)
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, roomsInParallel)
	for _, roomID := range order {
		wg.Add(1)
		sem <- struct{}{}
		go func(pdus []*inboundPDU) {
			defer func() { <-sem; wg.Done() }()
			s.receiveRoom(ctx, origin, pdus, record)
		}(byRoom[roomID])
	}
	wg.Wait()
	if edus != nil {
		var failed error
		for _, e := range t.EDUs {
			if err := edus(ctx, origin, e.Type, e.Content); err != nil && failed == nil {
				failed = err
			}
		}
		if failed != nil {
			// An EDU that must not be lost (a to-device message) was not
			// stored: the transaction fails, unrecorded, and its sender
			// sends it again (a 200 "even in the event of one or more PDUs
			// failing" is for refused PDUs, not for this server's own
			// failure; Server-Server API, "Transactions"). Processing it
			// again is safe: PDUs are known by event ID, to-device
			// messages by message_id, the rest is idempotent or ephemeral.
			s.Log.Warn("federation: a transaction's EDU could not be kept", "origin", origin, "txn", txnID, "err", failed)
			return nil, failed
		}
	}
	answer, err := json.Marshal(map[string]any{"pdus": results})
	if err != nil {
		return nil, err
	}
	s.answers().Put(key, answer)
	if s.Txns != nil {
		now := time.Now()
		if err := s.Txns.FedTxnRecord(ctx, origin, txnID, answer, now.UnixMilli()); err != nil {
			s.Log.Warn("federation: keeping a transaction's answer", "origin", origin, "txn", txnID, "err", err)
		}
		s.pruneTxns(now)
	}
	return answer, nil
}

// pruneTxns deletes the stored answers older than txnsKeptFor, at most once
// per txnsPruneEvery, in the background.
func (s *Service) pruneTxns(now time.Time) {
	last := s.txnsPruned.Load()
	if now.UnixMilli()-last < txnsPruneEvery.Milliseconds() || !s.txnsPruned.CompareAndSwap(last, now.UnixMilli()) {
		return
	}
	go func() {
		if _, err := s.Txns.FedTxnPrune(context.Background(), now.Add(-txnsKeptFor).UnixMilli()); err != nil {
			s.Log.Warn("federation: pruning transactions' answers", "err", err)
		}
	}()
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

// inboundPDU is one PDU of a transaction, checked.
type inboundPDU struct {
	raw    json.RawMessage
	roomID string
	rv     *event.RoomVersion // nil: a room this server is not in
	pdu    *event.PDU         // parsed and checked (rv set, err nil)
	id     string             // the event ID to answer for ("": none)
	err    error              // why it is refused
	skip   bool               // nothing to answer (no room ID, unparseable)
}

// checkPDUs parses the PDUs of a transaction for their rooms' versions and
// checks their signatures and hashes (checkPDU), on every core.
func (s *Service) checkPDUs(ctx context.Context, raws []json.RawMessage) []*inboundPDU {
	out := make([]*inboundPDU, len(raws))
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(raws)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				out[i] = s.checkInbound(ctx, raws[i])
			}
		}()
	}
	for i := range raws {
		work <- i
	}
	close(work)
	wg.Wait()
	return out
}

func (s *Service) checkInbound(ctx context.Context, raw json.RawMessage) *inboundPDU {
	p := &inboundPDU{raw: raw}
	var head struct {
		RoomID string `json:"room_id"`
	}
	if json.Unmarshal(raw, &head) != nil || head.RoomID == "" {
		p.skip = true
		return p
	}
	p.roomID = head.RoomID
	rv, err := s.Rooms.RoomVersion(ctx, head.RoomID)
	if err != nil {
		return p // a room this server is not in: receiveOutOfRoom
	}
	p.rv = rv
	pdu, err := s.checkPDU(ctx, rv, raw)
	if err != nil {
		if pdu == nil {
			p.skip = true
		} else {
			p.id, p.err = pdu.EventID, err
		}
		return p
	}
	p.pdu, p.id = pdu, pdu.EventID
	if pdu.RoomID != head.RoomID {
		p.err = errors.New("room_id mismatch")
	}
	return p
}

// receiveRoom takes the checked PDUs of one room in order: runs of them go
// to the room writer together (room.Service.ReceiveBatch); an event citing
// events this server lacks has the gap before it filled from origin first.
func (s *Service) receiveRoom(ctx context.Context, origin string, pdus []*inboundPDU, record func(string, error)) {
	var run []*event.PDU
	flush := func() {
		for len(run) > 0 {
			res := s.Rooms.ReceiveBatch(ctx, origin, run)
			if len(res) == 0 {
				return
			}
			for i, r := range res[:len(res)-1] {
				record(run[i].EventID, s.pduError(run[i], origin, r.Err))
			}
			last, pdu := res[len(res)-1], run[len(res)-1]
			var missing *room.MissingEventsError
			if errors.As(last.Err, &missing) {
				record(pdu.EventID, s.receiveAfterGap(ctx, origin, pdu, missing))
			} else {
				record(pdu.EventID, s.pduError(pdu, origin, last.Err))
			}
			run = run[len(res):]
		}
	}
	for _, p := range pdus {
		if p.rv == nil {
			flush()
			record(s.receiveOutOfRoom(ctx, origin, p.roomID, p.raw))
			continue
		}
		run = append(run, p.pdu)
	}
	flush()
}

// pduError is the error a PDU is answered with. Rejected and soft-failed
// events are processed events: the spec's per-PDU errors are for PDUs that
// could not be processed.
func (s *Service) pduError(pdu *event.PDU, origin string, err error) error {
	if err == nil {
		return nil
	}
	var missing *room.MissingEventsError
	if errors.As(err, &missing) || errors.Is(err, room.ErrServerDenied) {
		return err
	}
	if me, ok := matrix.AsError(err); ok {
		return me
	}
	s.Log.Error("federation: receiving an event", "event", pdu.EventID, "origin", origin, "err", err)
	return errors.New("internal error")
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
