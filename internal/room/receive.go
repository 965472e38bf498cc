package room

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"conclave/internal/authrules"
	"conclave/internal/event"
	"conclave/internal/lru"
	"conclave/internal/stateres"
	"conclave/internal/store"
)

// Events from other servers go through the same writer as local ones: the
// room lock, one store transaction, the in-memory state, the tracker marks
// and the notifier. What differs is where the state before an event comes
// from: its prev_events need not be the room's forward extremities, so the
// state before it is the state after its prev event, or the resolution of
// the states after several; and the room's current state is the resolution
// of its forward extremities' states (Server-Server API, "Checks performed
// on receipt of a PDU"; docs/federation.md, "The room model is a graph").

// StateMap is a room state as event IDs.
type StateMap = stateres.StateMap

// EventLoader gives state resolution the events it walks.
type EventLoader = stateres.Loader

// StateResolver resolves several states of a room into one (state
// resolution v2, or v2.1 for room version 12): homeserver wires
// internal/stateres here.
type StateResolver func(rv *event.RoomVersion, sets []StateMap, load EventLoader) (StateMap, error)

// Outcome is what became of a received event.
type Outcome int

const (
	// Accepted: in the timeline, with its state.
	Accepted Outcome = iota
	// SoftFailed: allowed by the state before it, not by the room's current
	// state; kept out of clients' timelines and the forward extremities.
	SoftFailed
	// Rejected: it failed the authorisation rules.
	Rejected
	// AlreadyKnown: this server had it; nothing changed.
	AlreadyKnown
)

func (o Outcome) String() string {
	return [...]string{"accepted", "soft-failed", "rejected", "already known"}[o]
}

// Received is the outcome of one received event.
type Received struct {
	Outcome Outcome
	// Reason says why an event was rejected or soft-failed.
	Reason string
	// Pos is the stream position of an accepted event.
	Pos int64
}

// MissingEventsError: the event cites prev or auth events this server does
// not have (or has only as outliers, without their state). The caller
// fetches them (get_missing_events, /state_ids) and gives the event again.
type MissingEventsError struct{ Events []string }

func (e *MissingEventsError) Error() string {
	return "missing events: " + strings.Join(e.Events, ", ")
}

// maxStateGroupsKept bounds the states of groups kept in memory.
const maxStateGroupsKept = 2048

// graphEvent is a stored event with its place in the graph, parsed.
type graphEvent struct {
	pdu      *event.PDU
	kind     int
	group    int64
	reason   string
	replaces string
	// pending: decided in a batch (ReceiveBatch) and not written yet, its
	// number there (1-based); its group is not known yet.
	pending int
	// given: the state after an outlier, as another server told it
	// (ReceiveWithState).
	given StateMap
}

// Receive takes one event another server sent into a room this server is
// in. The caller checked its format, signatures and content hash (an event
// whose hash did not match arrives redacted) and that it belongs to roomID.
// It is checked against its auth events (else rejected), against the state
// before it (else rejected) and against the room's current state (else
// soft-failed), then persisted; an accepted event is announced like a local
// one. An event already stored answers AlreadyKnown.
func (s *Service) Receive(ctx context.Context, pdu *event.PDU) (Received, error) {
	var out Received
	err := s.retry(ctx, pdu.RoomID, func() (err error) {
		out, err = s.receiveOnce(ctx, pdu)
		return err
	})
	return out, err
}

func (s *Service) receiveOnce(ctx context.Context, pdu *event.PDU) (Received, error) {
	e, rs, err := s.lock(ctx, pdu.RoomID)
	if err != nil {
		return Received{}, err
	}
	defer s.unlock(e)
	return s.receiveLocked(ctx, rs, pdu)
}

// receiveInputs is what a received event cites, as the graph has it.
type receiveInputs struct {
	known      bool // the event itself is stored
	authEvents []*event.PDU
	prevs      []*graphEvent // prev events that were not rejected
	prevIDs    []string      // their IDs
	// rejectedPrevs are prev events that were rejected: the state after
	// one is the state before it (see beyondRejected).
	rejectedPrevs []string
	missing       []string
	// rejectedAuth is an auth event that was rejected: so is the event.
	rejectedAuth string
}

// classify reads pdu's auth and prev events in known (the stored events
// among them).
func classify(pdu *event.PDU, known map[string]*graphEvent) receiveInputs {
	var in receiveInputs
	if known[pdu.EventID] != nil {
		in.known = true
		return in
	}
	in.authEvents = make([]*event.PDU, 0, len(pdu.AuthEvents))
	for _, id := range pdu.AuthEvents {
		g := known[id]
		switch {
		case g == nil:
			in.missing = append(in.missing, id)
		case g.kind == store.KindRejected:
			in.rejectedAuth = id
			return in
		default:
			in.authEvents = append(in.authEvents, g.pdu)
		}
	}
	for _, id := range pdu.PrevEvents {
		g := known[id]
		switch {
		case g == nil || (g.kind == store.KindOutlier && g.given == nil) || g.kind == store.KindBackfilled,
			g.kind == store.KindPurged && g.group == 0: // known without its state (a purged backfilled event has none either)
			in.missing = append(in.missing, id)
		case g.kind == store.KindRejected:
			in.rejectedPrevs = append(in.rejectedPrevs, id)
		default:
			in.prevs = append(in.prevs, g)
			in.prevIDs = append(in.prevIDs, id)
		}
	}
	return in
}

// maxBeyondRejected bounds the rejected events walked through to find the
// state before a received event.
const maxBeyondRejected = 100

// beyondRejected replaces in's rejected prev events by the nearest events
// before them that were not rejected (walking prev events, bounded): their
// states make the state before the event. Events this server lacks there
// are left out.
func (s *Service) beyondRejected(ctx context.Context, rv *event.RoomVersion, in *receiveInputs) error {
	queue := slices.Clone(in.rejectedPrevs)
	seen := map[string]bool{}
	for _, id := range queue {
		seen[id] = true
	}
	for walked := 0; len(queue) > 0 && walked < maxBeyondRejected; walked++ {
		id := queue[0]
		queue = queue[1:]
		found, err := s.graphEvents(ctx, rv, []string{id})
		if err != nil {
			return err
		}
		g := found[id]
		if g == nil {
			continue
		}
		if g.kind != store.KindRejected {
			if (g.kind == store.KindTimeline || g.kind == store.KindSoftFailed) && g.group != 0 && !slices.Contains(in.prevIDs, id) {
				in.prevs = append(in.prevs, g)
				in.prevIDs = append(in.prevIDs, id)
			}
			continue
		}
		for _, p := range g.pdu.PrevEvents {
			if !seen[p] {
				seen[p] = true
				queue = append(queue, p)
			}
		}
	}
	return nil
}

// extendsOnly says whether pdu's one prev event is the room's one forward
// extremity, with its state known: the state before pdu is then the
// room's current state, in memory.
func extendsOnly(rs *roomState, pdu *event.PDU, prevs []*graphEvent) bool {
	return len(rs.extremities) == 1 && len(pdu.PrevEvents) == 1 && len(prevs) == 1 && pdu.PrevEvents[0] == rs.extremities[0] &&
		(prevs[0].group != 0 || prevs[0].pending != 0)
}

// receivedIDs lists the events a received event's checks read: itself, its
// auth and prev events.
func receivedIDs(pdu *event.PDU) []string {
	ids := make([]string, 0, 1+len(pdu.AuthEvents)+len(pdu.PrevEvents))
	return append(append(append(ids, pdu.EventID), pdu.AuthEvents...), pdu.PrevEvents...)
}

// receiveLocked is Receive under the room's writer lock.
func (s *Service) receiveLocked(ctx context.Context, rs *roomState, pdu *event.PDU) (Received, error) {
	return s.receiveLockedWith(ctx, rs, pdu, nil)
}

// receiveLockedWith is receiveLocked where given holds the state after
// prev events stored as outliers (ReceiveWithState).
func (s *Service) receiveLockedWith(ctx context.Context, rs *roomState, pdu *event.PDU, given map[string]StateMap) (Received, error) {
	if pdu.Version == nil || pdu.Version.ID != rs.version.ID {
		return Received{}, fmt.Errorf("room: event of room version %v received for a room of version %s", pdu.Version, rs.version.ID)
	}
	known, err := s.graphEvents(ctx, rs.version, receivedIDs(pdu))
	if err != nil {
		return Received{}, err
	}
	for id, st := range given {
		switch g := known[id]; {
		case g == nil:
			// A prev event this server could not take (it failed its
			// checks, or could not be fetched): cited, never stored, its
			// state told (ReceiveWithState).
			known[id] = &graphEvent{kind: store.KindOutlier, given: st}
		case g.kind == store.KindOutlier:
			g.given = st
		}
	}
	in := classify(pdu, known)
	switch {
	case in.known:
		return Received{Outcome: AlreadyKnown}, nil
	case in.rejectedAuth != "":
		return s.reject(ctx, rs, pdu, "auth event "+in.rejectedAuth+" was rejected")
	case len(in.missing) > 0:
		return Received{}, &MissingEventsError{Events: in.missing}
	}
	if len(in.rejectedPrevs) > 0 {
		// A rejected event changed nothing: the state after it is the state
		// before it, its own prev events' (as Synapse keeps it).
		if err := s.beyondRejected(ctx, rs.version, &in); err != nil {
			return Received{}, err
		}
	}
	if len(in.prevs) == 0 {
		return s.reject(ctx, rs, pdu, "every prev event was rejected")
	}
	prevs := in.prevs
	v := receivedVerifier{}
	if err := authrules.CheckAgainstAuthEvents(pdu, in.authEvents, rs.StateEvent("m.room.create", ""), v); err != nil {
		return s.reject(ctx, rs, pdu, "not allowed by its auth events: "+err.Error())
	}
	if extendsOnly(rs, pdu, prevs) {
		// The common case: the event extends the room's one forward
		// extremity, so the state before it is the current state, in
		// memory; one check is both the second and the third.
		if err := authrules.CheckWith(pdu, rs, v); err != nil {
			return s.reject(ctx, rs, pdu, "not allowed by the state before it: "+err.Error())
		}
		w := &store.GraphWrite{Event: receivedRowFrom(rs, pdu), StateBefore: prevs[0].group}
		if err := s.checkAccessRules(ctx, rs, pdu); err != nil {
			return s.softFail(ctx, w, err)
		}
		w.Extremities = []string{pdu.EventID}
		return s.persistReceived(ctx, rs, pdu, w, nil)
	}
	before, err := s.stateBefore(ctx, rs, prevs)
	if err != nil {
		return Received{}, err
	}
	getter := &lazyState{ctx: ctx, s: s, rv: rs.version, ids: before.ids}
	authErr := authrules.CheckWith(pdu, getter, v)
	if getter.err != nil {
		return Received{}, getter.err
	}
	if authErr != nil {
		return s.reject(ctx, rs, pdu, "not allowed by the state before it: "+authErr.Error())
	}
	row := receivedRow(rs, pdu, before.ids)
	w := &store.GraphWrite{Event: row, StateBefore: before.group, NewStateBefore: before.newGroup, StateBeforeChanges: before.changes,
		// Prev events whose state was told rather than known
		// (ReceiveWithState): history before this event is missing here.
		GapBefore: len(given) > 0}
	if err := authrules.CheckWith(pdu, rs, v); err != nil {
		return s.softFail(ctx, w, err)
	}
	if err := s.checkAccessRules(ctx, rs, pdu); err != nil {
		return s.softFail(ctx, w, err)
	}

	// The forward extremities: those the event does not cite, and it.
	exts := make([]string, 0, len(rs.extremities)+1)
	for _, x := range rs.extremities {
		if !slices.Contains(in.prevIDs, x) {
			exts = append(exts, x)
		}
	}
	exts = append(exts, pdu.EventID)
	w.Extremities = exts

	after := before.ids
	if pdu.StateKey != nil {
		after = make(StateMap, len(before.ids)+1)
		for k, id := range before.ids {
			after[k] = id
		}
		after[authrules.StateKey{Type: pdu.Type, StateKey: *pdu.StateKey}] = pdu.EventID
	}
	var current StateMap
	if !sameSet(in.prevIDs, rs.extremities) {
		// The event does not extend the current state: the current state is
		// the resolution of the extremities' states.
		w.CurrentResolved = true
		if current, err = s.resolveExtremities(ctx, rs, exts, pdu, after); err != nil {
			return Received{}, err
		}
		w.CurrentChanges, err = s.stateChanges(ctx, rs, current, pdu)
		if err != nil {
			return Received{}, err
		}
	}
	return s.persistReceived(ctx, rs, pdu, w, after)
}

// persistReceived writes an accepted received event and applies it to the
// in-memory state; after is the state after it when known (kept in the
// cache of groups).
func (s *Service) persistReceived(ctx context.Context, rs *roomState, pdu *event.PDU, w *store.GraphWrite, after StateMap) (Received, error) {
	row := w.Event
	exts := w.Extremities
	var otherMembers []string
	for _, c := range w.CurrentChanges {
		if c.Type == "m.room.member" {
			otherMembers = append(otherMembers, c.StateKey)
		}
	}
	if w.Kind == store.KindTimeline {
		s.setPush(ctx, rs, pdu, &w.Event)
		row.Push, row.PushCommon, row.PushOwn = w.Event.Push, w.Event.PushCommon, w.Event.PushOwn
	}
	relayTo := s.relayServers(ctx, rs, pdu.EventID)
	w.Event.Fed, row.Fed = relayTo, relayTo
	rows := []store.NewEvent{row}
	wctx, done := s.beginResolved(ctx, rs.roomID, rows, otherMembers, resolvedOthers(w), w.GapBefore)
	pos, group, err := s.store.PersistGraphEvent(wctx, w)
	if err != nil {
		done(nil)
		if errors.Is(err, store.ErrConflict) {
			return Received{Outcome: AlreadyKnown}, nil
		}
		return Received{}, err
	}
	done([]int64{pos})
	if after != nil {
		s.groupState(group, after)
	}

	// The in-memory state follows the store.
	var targets []string
	if pdu.Type == "m.room.member" && pdu.StateKey != nil {
		targets = append(targets, *pdu.StateKey)
	}
	if !w.CurrentResolved {
		rs.apply(pdu)
	} else if err := s.applyChanges(ctx, rs, w.CurrentChanges); err != nil {
		rs.stale = true // reloaded from the store on next use
	}
	targets = append(targets, otherMembers...)
	rs.extremities = exts
	rs.depth = max(rs.depth, pdu.Depth)
	s.parsed.put(pdu)
	if s.Notify != nil {
		s.Notify(Notice{RoomID: rs.roomID, Pos: pos, Users: rs.joinedUsers(targets), Members: targets})
	}
	if len(relayTo) > 0 {
		s.FedCommitted(relayTo)
	}
	return Received{Outcome: Accepted, Pos: pos}, nil
}

// relayKey is the context key under which AcceptMembership passes the
// membership event (send_join, send_leave, send_knock) this server relays
// to the other servers in the room, and its origin (a relay).
type relayKey struct{}

type relay struct{ origin, eventID string }

// relayServers lists, for the event of a relaying write (relayKey) when the
// store queues events (FedCommitted), the servers it is relayed to: the
// servers with members joined to the room, but this one and the event's
// origin — whose own user's membership is the only one the event changes,
// so the list is the same before and after it. Queued in the event's
// transaction (store.NewEvent.Fed) so no death after the commit loses it.
func (s *Service) relayServers(ctx context.Context, rs *roomState, eventID string) []string {
	r, ok := ctx.Value(relayKey{}).(relay)
	if !ok || r.eventID != eventID || s.FedCommitted == nil {
		return nil // only that event: not others its write may persist
	}
	var out []string
	for _, srv := range s.otherServers(rs, nil) {
		if srv != r.origin {
			out = append(out, srv)
		}
	}
	return out
}

// reject stores a rejected event, so it is not fetched and checked again.
func (s *Service) reject(ctx context.Context, rs *roomState, pdu *event.PDU, reason string) (Received, error) {
	row := receivedRow(rs, pdu, nil)
	_, _, err := s.store.PersistGraphEvent(ctx, &store.GraphWrite{Event: row, Kind: store.KindRejected, RejectedReason: reason})
	if err != nil && !errors.Is(err, store.ErrConflict) {
		return Received{}, err
	}
	return Received{Outcome: Rejected, Reason: reason}, nil
}

// softFail stores a received event the current state does not allow:
// "the event is stored … but not used for state … or forward extremities"
// of the current state (Server-Server API, "Soft failure"); it keeps its own
// state. The room access rules soft-fail too: Tchap's module judges received
// events through Synapse's check_event_allowed against the current state,
// and a soft failure keeps this server's graph the same as the others' while
// the event never takes effect here (docs/rules.md).
func (s *Service) softFail(ctx context.Context, w *store.GraphWrite, why error) (Received, error) {
	w.Kind = store.KindSoftFailed
	w.Extremities = nil
	if _, _, err := s.store.PersistGraphEvent(ctx, w); err != nil && !errors.Is(err, store.ErrConflict) {
		return Received{}, err
	}
	return Received{Outcome: SoftFailed, Reason: why.Error()}, nil
}

// receivedRowFrom is receivedRow when the state before the event is rs.
func receivedRowFrom(rs *roomState, pdu *event.PDU) store.NewEvent {
	ne := receivedRow(rs, pdu, nil)
	if pdu.StateKey != nil {
		if old := rs.StateEvent(pdu.Type, *pdu.StateKey); old != nil {
			ne.ReplacesState = old.EventID
		}
	}
	return ne
}

// receivedRow is the row of a received event; before (the state before it)
// gives the state event it replaces.
func receivedRow(rs *roomState, pdu *event.PDU, before StateMap) store.NewEvent {
	ne := store.NewEvent{
		EventID: pdu.EventID, RoomID: rs.roomID, Type: pdu.Type, StateKey: pdu.StateKey, Sender: pdu.Sender,
		Depth: pdu.Depth, OriginServerTS: pdu.OriginServerTS, JSON: pdu.Raw, Redacts: pdu.Redacts, PrevEvents: pdu.PrevEvents,
	}
	if pdu.StateKey != nil {
		ne.ReplacesState = before[authrules.StateKey{Type: pdu.Type, StateKey: *pdu.StateKey}]
		if pdu.Type == "m.room.member" {
			ne.Membership, _ = authrules.Membership(pdu)
		}
	}
	ne.RelatesTo, ne.RelType, ne.ContainsURL = contentIndex(pdu.Content)
	return ne
}

// stateBeforeEvent is the state before a received event.
type stateBeforeEvent struct {
	group    int64 // an existing group, or the base of the new one
	newGroup bool  // the state is the resolution of several prev events' states
	changes  []store.StateEntry
	ids      StateMap
}

func (s *Service) stateBefore(ctx context.Context, rs *roomState, prevs []*graphEvent) (*stateBeforeEvent, error) {
	groups := make([]int64, 0, len(prevs))
	var given []StateMap
	for _, p := range prevs {
		if p.given != nil {
			given = append(given, p.given)
			continue
		}
		if p.group == 0 {
			return nil, fmt.Errorf("room: prev event %s has no state group", p.pdu.EventID)
		}
		if !slices.Contains(groups, p.group) {
			groups = append(groups, p.group)
		}
	}
	if len(groups) == 0 {
		// Only prev events whose state another server told: a new group
		// made whole (base 0).
		st := given[0]
		if len(given) > 1 {
			var err error
			if st, err = s.resolve(ctx, rs.version, given, nil); err != nil {
				return nil, err
			}
		}
		return &stateBeforeEvent{newGroup: true, changes: diffState(nil, st), ids: st}, nil
	}
	first, err := s.stateOfGroup(ctx, groups[0])
	if err != nil {
		return nil, err
	}
	if len(groups) == 1 && len(given) == 0 {
		return &stateBeforeEvent{group: groups[0], ids: first}, nil
	}
	sets := append([]StateMap{first}, given...)
	for _, g := range groups[1:] {
		st, err := s.stateOfGroup(ctx, g)
		if err != nil {
			return nil, err
		}
		sets = append(sets, st)
	}
	resolved, err := s.resolve(ctx, rs.version, sets, nil)
	if err != nil {
		return nil, err
	}
	return &stateBeforeEvent{group: groups[0], newGroup: true, changes: diffState(first, resolved), ids: resolved}, nil
}

// resolveExtremities resolves the states after the forward extremities; the
// new event (self, with its state after) is not stored yet.
func (s *Service) resolveExtremities(ctx context.Context, rs *roomState, exts []string, self *event.PDU, selfState StateMap) (StateMap, error) {
	var others []string
	for _, x := range exts {
		if x != self.EventID {
			others = append(others, x)
		}
	}
	if len(others) == 0 {
		return selfState, nil
	}
	found, err := s.graphEvents(ctx, rs.version, others)
	if err != nil {
		return nil, err
	}
	sets := []StateMap{selfState}
	seen := map[int64]bool{}
	for _, x := range others {
		g := found[x]
		if g == nil || g.group == 0 {
			return nil, fmt.Errorf("room: forward extremity %s has no state", x)
		}
		if seen[g.group] {
			continue
		}
		seen[g.group] = true
		st, err := s.stateOfGroup(ctx, g.group)
		if err != nil {
			return nil, err
		}
		sets = append(sets, st)
	}
	return s.resolve(ctx, rs.version, sets, self)
}

// resolve resolves sets; pending is an event not stored yet that they may
// name (the one being received).
func (s *Service) resolve(ctx context.Context, rv *event.RoomVersion, sets []StateMap, pending *event.PDU) (StateMap, error) {
	if s.ResolveState == nil {
		return nil, errors.New("room: no state resolution configured")
	}
	return s.ResolveState(rv, sets, &storeLoader{ctx: ctx, s: s, rv: rv, pending: pending})
}

// stateChanges lists what takes the room's current state to next; pending
// is the event being received (not stored yet), which next may name.
func (s *Service) stateChanges(ctx context.Context, rs *roomState, next StateMap, pending *event.PDU) ([]store.StateEntry, error) {
	cur := make(StateMap, len(rs.state))
	for k, ev := range rs.state {
		cur[authrules.StateKey{Type: k.typ, StateKey: k.key}] = ev.EventID
	}
	changes := diffState(cur, next)
	// Memberships need the membership of each member event that changed.
	var need []string
	for _, c := range changes {
		if c.Type == "m.room.member" && c.EventID != "" && c.EventID != pending.EventID {
			need = append(need, c.EventID)
		}
	}
	found, err := s.graphEvents(ctx, rs.version, need)
	if err != nil {
		return nil, err
	}
	found[pending.EventID] = &graphEvent{pdu: pending}
	for i := range changes {
		c := &changes[i]
		if c.Type == "m.room.member" && c.EventID != "" {
			g := found[c.EventID]
			if g == nil {
				return nil, fmt.Errorf("room: resolved state names unknown event %s", c.EventID)
			}
			c.Membership, _ = authrules.Membership(g.pdu)
		}
	}
	return changes, nil
}

// applyChanges applies committed state changes to the in-memory state.
func (s *Service) applyChanges(ctx context.Context, rs *roomState, changes []store.StateEntry) error {
	var need []string
	for _, c := range changes {
		if c.EventID != "" {
			need = append(need, c.EventID)
		}
	}
	found, err := s.graphEvents(ctx, rs.version, need)
	if err != nil {
		return err
	}
	for _, c := range changes {
		if c.EventID == "" {
			rs.remove(c.Type, c.StateKey)
			continue
		}
		g := found[c.EventID]
		if g == nil {
			return fmt.Errorf("room: state event %s not found", c.EventID)
		}
		rs.apply(g.pdu)
	}
	return nil
}

// diffState lists the changes that take from to to, in a stable order.
func diffState(from, to StateMap) []store.StateEntry {
	var out []store.StateEntry
	for k, id := range to {
		if from[k] != id {
			out = append(out, store.StateEntry{Type: k.Type, StateKey: k.StateKey, EventID: id})
		}
	}
	for k := range from {
		if _, ok := to[k]; !ok {
			out = append(out, store.StateEntry{Type: k.Type, StateKey: k.StateKey})
		}
	}
	slices.SortFunc(out, func(a, b store.StateEntry) int {
		if c := strings.Compare(a.Type, b.Type); c != 0 {
			return c
		}
		return strings.Compare(a.StateKey, b.StateKey)
	})
	return out
}

// graphEvents loads stored events of any kind, parsed.
func (s *Service) graphEvents(ctx context.Context, rv *event.RoomVersion, ids []string) (map[string]*graphEvent, error) {
	out := make(map[string]*graphEvent, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	pdus, err := s.store.GetPDUs(ctx, ids)
	if err != nil {
		return nil, err
	}
	for i := range pdus {
		p := &pdus[i]
		parsed := s.parsed.get(p.EventID)
		if parsed == nil {
			parsed, err = event.ParsePDU(rv, p.JSON)
			if err != nil {
				return nil, fmt.Errorf("room: stored event %s: %w", p.EventID, err)
			}
			if parsed.RoomID == "" {
				parsed.RoomID = p.RoomID
			}
			s.parsed.put(parsed)
		}
		out[p.EventID] = &graphEvent{pdu: parsed, kind: p.Kind, group: p.StateGroup, reason: p.RejectedReason, replaces: p.ReplacesState}
	}
	return out, nil
}

// stateOfGroup reads a state group (kept in a bounded cache: groups never
// change).
func (s *Service) stateOfGroup(ctx context.Context, group int64) (StateMap, error) {
	if st, ok := s.groups().Get(group); ok {
		return st, nil
	}
	entries, err := s.store.StateGroup(ctx, group)
	if err != nil {
		return nil, err
	}
	st := make(StateMap, len(entries))
	for _, e := range entries {
		st[authrules.StateKey{Type: e.Type, StateKey: e.StateKey}] = e.EventID
	}
	s.groupState(group, st)
	return st, nil
}

func (s *Service) groupState(group int64, st StateMap) {
	if group != 0 {
		s.groups().Put(group, st)
	}
}

func (s *Service) groups() *lru.Cache[int64, StateMap] {
	s.groupsOnce.Do(func() { s.groupCache = lru.New[int64, StateMap](maxStateGroupsKept) })
	return s.groupCache
}

// lazyState is a state given as event IDs, read as events when the rules ask.
type lazyState struct {
	ctx context.Context
	s   *Service
	rv  *event.RoomVersion
	ids StateMap
	err error
}

func (l *lazyState) StateEvent(typ, key string) *event.PDU {
	id, ok := l.ids[authrules.StateKey{Type: typ, StateKey: key}]
	if !ok {
		return nil
	}
	found, err := l.s.graphEvents(l.ctx, l.rv, []string{id})
	if err != nil {
		l.err = err
		return nil
	}
	if g := found[id]; g != nil {
		return g.pdu
	}
	l.err = fmt.Errorf("room: state event %s not found", id)
	return nil
}

// storeLoader gives state resolution the stored events, and the one being
// received (pending).
type storeLoader struct {
	ctx     context.Context
	s       *Service
	rv      *event.RoomVersion
	pending *event.PDU
}

func (l *storeLoader) Event(id string) (*event.PDU, bool, bool) {
	if l.pending != nil && l.pending.EventID == id {
		return l.pending, false, true
	}
	found, err := l.s.graphEvents(l.ctx, l.rv, []string{id})
	if err != nil {
		return nil, false, false
	}
	g := found[id]
	if g == nil {
		return nil, false, false
	}
	return g.pdu, g.kind == store.KindRejected, true
}

// receivedVerifier answers the signature questions of the authorisation
// rules for received events: the caller verified every signature an event
// carries (keyring), so an event is signed by a server when it carries that
// server's signature.
type receivedVerifier struct{}

func (receivedVerifier) EventSignedBy(ev *event.PDU, serverName string) bool {
	return len(ev.SignatureKeys(serverName)) > 0
}

func (receivedVerifier) ThirdPartyInviteSigned(signed json.RawMessage, publicKeys []string) bool {
	return event.ThirdPartyInviteSigned(signed, publicKeys)
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}
