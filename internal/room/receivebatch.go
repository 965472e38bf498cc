package room

import (
	"context"
	"errors"

	"conclave/internal/authrules"
	"conclave/internal/event"
	"conclave/internal/store"
)

// Receiving many events of a room at once (a transaction's PDUs): under one
// hold of the room's writer lock, the events that extend the room's one
// forward extremity — a busy room's messages arrive as such a chain — are
// decided in memory against the room's current state, each after the one
// before, and written together in one store transaction (one commit instead
// of one per event). Anything else (a fork, a merge, an event citing events
// this server lacks) first writes what was decided, then goes through the
// one-event path. The outcome of every event is what Receive would have
// answered for it, the events taken one after the other in order.

// ErrServerDenied: the room's m.room.server_acl denies the sending server.
var ErrServerDenied = errors.New("this server is denied by the room's server ACL")

// BatchResult is what became of one event given to ReceiveBatch.
type BatchResult struct {
	Received
	// Err: the event was not processed (as Receive's error).
	Err error
}

// ReceiveBatch takes events another server (origin) sent into one room, in
// order; each was checked as Receive requires. Each event from a server
// the room's ACL denies, as it stands when the event comes up, is refused
// with ErrServerDenied. The results are those of pdus[:len(results)]: it
// stops after the first event citing events this server does not have (its
// Err is a *MissingEventsError), so the caller can fill the gap and go on
// from there.
func (s *Service) ReceiveBatch(ctx context.Context, origin string, pdus []*event.PDU) []BatchResult {
	if len(pdus) == 0 {
		return nil
	}
	roomID := pdus[0].RoomID
	var out []BatchResult
	err := s.retry(ctx, roomID, func() error {
		var err error
		out, err = s.receiveBatchOnce(ctx, origin, pdus)
		return err
	})
	if err != nil {
		out = make([]BatchResult, len(pdus))
		for i := range out {
			out[i].Err = err
		}
	}
	return out
}

// recvBatch is the events of a batch decided and not written yet.
type recvBatch struct {
	// known holds the stored events the batch cites, and those it decided.
	known   map[string]*graphEvent
	fetched map[string]bool // IDs looked up in the store (found or not)
	writes  []*store.GraphWrite
	pdus    []*event.PDU // the event of each write
	result  []int        // the result index of each write
	targets []string     // members whose membership the accepted ones change
}

func (s *Service) receiveBatchOnce(ctx context.Context, origin string, pdus []*event.PDU) ([]BatchResult, error) {
	e, rs, err := s.lock(ctx, pdus[0].RoomID)
	if err != nil {
		return nil, err
	}
	defer s.unlock(e)
	b := &recvBatch{fetched: map[string]bool{}}
	// Every event the batch names, read at once.
	var ids []string
	for _, pdu := range pdus {
		for _, id := range receivedIDs(pdu) {
			if !b.fetched[id] {
				b.fetched[id] = true
				ids = append(ids, id)
			}
		}
	}
	if b.known, err = s.graphEvents(ctx, rs.version, ids); err != nil {
		return nil, err
	}
	out := make([]BatchResult, 0, len(pdus))
	for _, pdu := range pdus {
		i := len(out)
		out = append(out, BatchResult{})
		if pdu.RoomID != rs.roomID {
			out[i].Err = errors.New("room: an event of another room in the batch")
			continue
		}
		if acl := rs.StateEvent("m.room.server_acl", ""); origin != "" && acl != nil && !ACLAllows(acl.Content, origin) {
			// m.room.server_acl applies to every PDU a server sends.
			out[i].Err = ErrServerDenied
			continue
		}
		if r, ok, err := s.receiveInMemory(ctx, rs, pdu, b, i); err != nil {
			out[i].Err = err
			continue
		} else if ok {
			out[i].Received = r
			continue
		}
		// Not decidable in memory: what was decided is written first.
		s.flushBatch(ctx, rs, b, out)
		r, err := s.receiveLocked(ctx, rs, pdu)
		out[i] = BatchResult{Received: r, Err: err}
		var missing *MissingEventsError
		if errors.As(err, &missing) {
			return out, nil
		}
		// The event may be stored now: read it again when cited.
		delete(b.known, pdu.EventID)
		delete(b.fetched, pdu.EventID)
	}
	s.flushBatch(ctx, rs, b, out)
	return out, nil
}

// lookup returns the events among ids, from the batch or the store.
func (b *recvBatch) lookup(ctx context.Context, s *Service, rv *event.RoomVersion, ids []string) (map[string]*graphEvent, error) {
	var need []string
	for _, id := range ids {
		if !b.fetched[id] {
			need = append(need, id)
		}
	}
	if len(need) > 0 {
		found, err := s.graphEvents(ctx, rv, need)
		if err != nil {
			return nil, err
		}
		for _, id := range need {
			b.fetched[id] = true
			if g := found[id]; g != nil {
				b.known[id] = g
			}
		}
	}
	return b.known, nil
}

// receiveInMemory decides pdu without writing anything when it can: an
// event already known, one rejected, or one extending the room's one
// forward extremity (its write is queued in b and rs moves on). ok false:
// it needs the one-event path.
func (s *Service) receiveInMemory(ctx context.Context, rs *roomState, pdu *event.PDU, b *recvBatch, result int) (Received, bool, error) {
	if pdu.Version == nil || pdu.Version.ID != rs.version.ID {
		return Received{}, false, nil
	}
	known, err := b.lookup(ctx, s, rs.version, receivedIDs(pdu))
	if err != nil {
		return Received{}, false, err
	}
	in := classify(pdu, known)
	switch {
	case in.known:
		return Received{Outcome: AlreadyKnown}, true, nil
	case in.rejectedAuth != "":
		return b.reject(rs, pdu, result, "auth event "+in.rejectedAuth+" was rejected"), true, nil
	case len(in.missing) > 0 || len(in.rejectedPrevs) > 0:
		return Received{}, false, nil // the one-event path looks before rejected ones
	}
	v := receivedVerifier{}
	if err := authrules.CheckAgainstAuthEvents(pdu, in.authEvents, rs.StateEvent("m.room.create", ""), v); err != nil {
		return b.reject(rs, pdu, result, "not allowed by its auth events: "+err.Error()), true, nil
	}
	if !extendsOnly(rs, pdu, in.prevs) {
		return Received{}, false, nil
	}
	// The state before it is the current state: one check is both the
	// second and the third (as in receiveLocked).
	if err := authrules.CheckWith(pdu, rs, v); err != nil {
		return b.reject(rs, pdu, result, "not allowed by the state before it: "+err.Error()), true, nil
	}
	if s.checkAccessRules(ctx, rs, pdu) != nil {
		return Received{}, false, nil // soft-failed by the one-event path
	}
	w := &store.GraphWrite{Event: receivedRowFrom(rs, pdu), Extremities: []string{pdu.EventID}}
	s.setPush(ctx, rs, pdu, &w.Event) // on the state before it
	if p := in.prevs[0]; p.pending != 0 {
		w.StateBeforeOf = p.pending
	} else {
		w.StateBefore = p.group
	}
	b.add(w, pdu, result, store.KindTimeline)
	rs.apply(pdu)
	rs.extremities = []string{pdu.EventID}
	rs.depth = max(rs.depth, pdu.Depth)
	if pdu.Type == "m.room.member" && pdu.StateKey != nil {
		b.targets = append(b.targets, *pdu.StateKey)
	}
	return Received{Outcome: Accepted}, true, nil
}

func (b *recvBatch) add(w *store.GraphWrite, pdu *event.PDU, result, kind int) {
	b.writes = append(b.writes, w)
	b.pdus = append(b.pdus, pdu)
	b.result = append(b.result, result)
	b.known[pdu.EventID] = &graphEvent{pdu: pdu, kind: kind, pending: len(b.writes)}
	b.fetched[pdu.EventID] = true
}

// reject queues the write of a rejected event.
func (b *recvBatch) reject(rs *roomState, pdu *event.PDU, result int, reason string) Received {
	b.add(&store.GraphWrite{Event: receivedRow(rs, pdu, nil), Kind: store.KindRejected, RejectedReason: reason}, pdu, result, store.KindRejected)
	return Received{Outcome: Rejected, Reason: reason}
}

// flushBatch writes the queued events in one store transaction and
// announces the accepted ones. If the write fails nothing was written: the
// room's state is read again and the queued events go through the
// one-event path one by one (their results replaced).
func (s *Service) flushBatch(ctx context.Context, rs *roomState, b *recvBatch, out []BatchResult) {
	if len(b.writes) == 0 {
		return
	}
	writes, pdus, results, targets := b.writes, b.pdus, b.result, b.targets
	b.writes, b.pdus, b.result, b.targets = nil, nil, nil, nil
	var rows []store.NewEvent
	for _, w := range writes {
		if w.Kind == store.KindTimeline {
			rows = append(rows, w.Event)
		}
	}
	wctx, done := s.beginWith(ctx, rs.roomID, rows, nil)
	pos, groups, err := s.store.PersistGraphEvents(wctx, writes)
	if err != nil {
		done(nil)
		s.redoOneByOne(ctx, rs, b, pdus, results, out)
		return
	}
	var timeline []int64
	for i, w := range writes {
		g := b.known[pdus[i].EventID]
		g.pending, g.group = 0, groups[i]
		if w.Kind == store.KindTimeline {
			timeline = append(timeline, pos[i])
			out[results[i]].Pos = pos[i]
			s.parsed.put(pdus[i])
		}
	}
	done(timeline)
	if s.Notify != nil && len(timeline) > 0 {
		s.Notify(Notice{RoomID: rs.roomID, Pos: timeline[len(timeline)-1], Users: rs.joinedUsers(targets), Members: targets})
	}
}

// redoOneByOne takes the events of a batch whose write failed through the
// one-event path, from the room's state as the store has it.
func (s *Service) redoOneByOne(ctx context.Context, rs *roomState, b *recvBatch, pdus []*event.PDU, results []int, out []BatchResult) {
	for _, pdu := range pdus {
		delete(b.known, pdu.EventID)
		delete(b.fetched, pdu.EventID)
	}
	st, err := s.loadState(ctx, rs.roomID)
	if err != nil {
		rs.stale = true
		for _, r := range results {
			out[r] = BatchResult{Err: err}
		}
		return
	}
	*rs = *st
	for i, pdu := range pdus {
		r, err := s.receiveLocked(ctx, rs, pdu)
		out[results[i]] = BatchResult{Received: r, Err: err}
	}
}
