// Package syncer serves /sync: it assembles what changed for one user between
// two stream positions, and long-polls on the Notifier until something does.
// It never polls the database on a timer.
package syncer

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"conclave/internal/changes"
	"conclave/internal/event"
	"conclave/internal/room"
	"conclave/internal/store"
	"conclave/internal/syncfilter"
)

// Store is what /sync reads.
type Store interface {
	store.Events
	store.Stream
	store.SyncQueries
	store.AccountData
	store.Receipts
	store.TimelineGaps
}

// Sources are the other services /sync reports on; each is optional.
type Sources struct {
	// Typing returns, for the given rooms, the typing users of each room whose
	// typing set changed after serial, and the current serial.
	Typing func(roomIDs []string, serial int64) (map[string][]string, int64)
	// Receipts formats the m.receipt content of each room from receipt rows,
	// hiding other users' private receipts.
	Receipts func(userID string, rows []store.Receipt) map[string]json.RawMessage
	// E2EE returns the device's to-device events in (since, upto] — deleting
	// those at or below since, which the client has acknowledged by syncing
	// from it — the position up to which they were taken (below upto when a
	// batch was full), and the one-time key counts and unused fallback types.
	E2EE func(ctx context.Context, userID, deviceID string, since, upto int64) (toDevice []json.RawMessage, next int64, otk map[string]int, fallback []string, err error)
	// E2EECounts is E2EE without the to-device messages, for a sync that
	// knows none arrived (see changes.go).
	E2EECounts func(ctx context.Context, userID, deviceID string) (otk map[string]int, fallback []string, err error)
	// DeviceLists returns users whose devices changed in (since, upto].
	DeviceLists func(ctx context.Context, userID string, since, upto int64) (changed, left []string, err error)
	// Presence returns m.presence events of the users sharing a room with
	// userID that changed after serial, and the current serial.
	Presence func(ctx context.Context, userID string, serial int64) ([]json.RawMessage, int64, error)
	// PresenceOf returns the current m.presence events of the given users
	// (those the syncing user newly shares a room with).
	PresenceOf func(userIDs []string) []json.RawMessage
	// AccountDataDefaults returns global account data a user has before
	// ever storing it (m.push_rules: the server-default rules), sent in an
	// initial sync when nothing of that type is stored.
	AccountDataDefaults func(userID string) map[string]json.RawMessage
	// Ignored returns the users userID ignores (spec "Ignoring Users"):
	// their non-state events are left out of timelines and their invites
	// are not sent.
	Ignored func(ctx context.Context, userID string) (map[string]bool, error)
}

// Service is the sync service.
type Service struct {
	store    Store
	rooms    *room.Service
	notifier *Notifier
	src      Sources
	unread   unreadCache
	fast     fastPaths     // fastpath.go
	builds   chan struct{} // see buildApart
}

// New returns the sync service.
func New(st Store, rooms *room.Service, n *Notifier, src Sources) *Service {
	s := &Service{store: st, rooms: rooms, notifier: n, src: src, builds: make(chan struct{}, maxConcurrentBuilds)}
	s.unread.init()
	return s
}

// Notifier returns the notifier that wakes this service's long-polls.
func (s *Service) Notifier() *Notifier { return s.notifier }

// Request is one /sync call.
type Request struct {
	UserID, DeviceID string
	Since            *Token
	Timeout          time.Duration
	FullState        bool
	Filter           *syncfilter.Filter // nil: no filter
}

// Limits on timelines: Synapse's default, and a cap on what a filter may ask.
const (
	DefaultTimelineLimit = syncfilter.DefaultLimit
	MaxTimelineLimit     = 500
)

// MaxTimeout caps the long-poll so that proxies and clients never see a
// request hang indefinitely.
const MaxTimeout = 5 * time.Minute

// Sync answers one /sync request.
func (s *Service) Sync(ctx context.Context, req *Request) (*Response, error) {
	timeout := min(req.Timeout, MaxTimeout)
	deadline := time.Now().Add(timeout)
	for {
		w, unregister := s.notifier.register(req.UserID)
		resp, err := s.buildApart(ctx, req)
		if err != nil || req.Since == nil || !resp.empty() || req.FullState {
			unregister()
			return resp, err
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			unregister()
			return resp, nil
		}
		timer := time.NewTimer(wait)
		select {
		case <-w.ch:
			timer.Stop()
			unregister()
		case <-timer.C:
			unregister()
			return resp, nil
		case <-ctx.Done():
			timer.Stop()
			unregister()
			return resp, nil
		case <-s.notifier.Closed():
			timer.Stop()
			unregister()
			return resp, nil
		}
	}
}

// maxConcurrentBuilds bounds the /sync responses being built at once.
var maxConcurrentBuilds = max(2, runtime.GOMAXPROCS(0))

// buildApart runs build on a goroutine of its own. Building a response goes
// deep into the SQLite driver, whose frames grow a goroutine's stack to tens
// of kilobytes, and a long-poll then keeps that stack while it waits: done
// apart, the deep stack is gone when build returns, and a waiting /sync
// costs a shallow stack (the idle scenario in docs/benchmarks.md).
//
// At most maxConcurrentBuilds (one per CPU) builds run at once. Under load, woken syncs
// then queue for a moment while messages keep being accepted, and each
// builds a response carrying everything that arrived meanwhile: fewer,
// fuller responses instead of one per event, with no delay when idle.
func (s *Service) buildApart(ctx context.Context, req *Request) (*Response, error) {
	select {
	case s.builds <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-s.builds }()
	var resp *Response
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			// The request's panic recovery does not reach this goroutine.
			if p := recover(); p != nil {
				resp, err = nil, fmt.Errorf("panic building a sync response: %v\n%s", p, debug.Stack())
			}
		}()
		resp, err = s.build(ctx, req)
	}()
	<-done
	return resp, err
}

func (s *Service) build(ctx context.Context, req *Request) (*Response, error) {
	var upto int64
	if t := s.fast.t; t != nil {
		// What the tracker has heard of (with several processes, the
		// database may be ahead of it: the rest is for the next sync).
		upto = t.Heard()
	} else {
		var err error
		if upto, err = s.store.MaxStreamPos(ctx); err != nil {
			return nil, err
		}
	}
	var since Token
	initial := req.Since == nil
	if !initial {
		since = *req.Since
		if since.Pos > upto && s.fast.t.Fed() {
			// A token from another process that has heard further: this
			// one hears the same soon. Answering from here would move the
			// client's token back and send it again what it has.
			s.fast.t.WaitHeard(since.Pos)
			upto = s.fast.t.Heard()
		}
		if since.Pos > upto {
			since.Pos = upto
		}
	}
	b := &builder{s: s, ctx: ctx, req: req, since: since.Pos, upto: upto, initial: initial, resp: newResponse()}
	// The tracker answers for this range: fastpath.go.
	b.known = !initial && s.fast.t.Known(since.Pos)
	// To-device messages come in bounded batches: when one is full, the whole
	// response stops at its last position so nothing is skipped.
	if err := b.e2ee(); err != nil {
		return nil, err
	}
	if err := b.rooms(); err != nil {
		return nil, err
	}
	if err := b.deviceLists(); err != nil {
		return nil, err
	}
	if err := b.accountData(); err != nil {
		return nil, err
	}
	typingSerial := b.typing(since.Typing)
	if err := b.receipts(); err != nil {
		return nil, err
	}
	var presenceSerial int64
	if s.src.Presence != nil && b.req.Filter.PresenceFilter().MatchType("m.presence") {
		evs, serial, err := s.src.Presence(ctx, req.UserID, since.Presence)
		if err != nil {
			return nil, err
		}
		presenceSerial = serial
		b.resp.Presence.Events = append(b.resp.Presence.Events, evs...)
		if s.src.PresenceOf != nil && !initial && len(b.newlyShared) > 0 && serial != 0 {
			b.resp.Presence.Events = mergePresence(b.resp.Presence.Events, s.src.PresenceOf(b.newlyShared))
		}
	}
	b.resp.NextBatch = Token{Pos: b.upto, Typing: typingSerial, Presence: presenceSerial}.String()
	return b.resp, nil
}

type builder struct {
	s             *Service
	ctx           context.Context
	req           *Request
	since         int64
	upto          int64
	initial       bool
	resp          *Response
	joined        []string        // joined room IDs included in this response's scope
	ignored       map[string]bool // users the syncing user ignores; see ignoredUsers
	ignoredLoaded bool
	// known: the change tracker answers for (since, upto] (fastpath.go):
	// a query whose subjects did not change in it is skipped.
	known bool
	// memberships are all the user's memberships, whatever the filter.
	memberships []store.Membership
	// membershipChanged: one of the user's memberships changed in range
	// (a join brings receipts, a read point and device lists).
	membershipChanged bool
	// newlyShared are users the syncing user started sharing a room with in
	// this sync's range: their presence is sent even if it did not change.
	newlyShared []string
}

func (b *builder) rooms() error {
	f := &b.s.fast
	mk := userKey(changes.Memberships, b.req.UserID)
	ms, ok := cached(f, f.members, b.req.UserID, mk)
	if ok && b.initial && f.t.Fed() {
		// Forgetting a room takes no stream position: another process's
		// is not heard. Only an initial sync leaves forgotten rooms out.
		ok = false
	}
	if !ok {
		tick := f.t.Tick()
		var err error
		if ms, err = b.s.store.UserMemberships(b.ctx, b.req.UserID); err != nil {
			return err
		}
		keep(f, f.members, b.req.UserID, mk, tick, ms)
	}
	b.memberships = ms
	for _, m := range ms {
		if !b.initial && m.Pos > b.since {
			b.membershipChanged = true
		}
	}
	var changed map[string]bool
	changedByQuery := b.initial || b.req.FullState
	if !b.initial && !b.req.FullState {
		changed = make(map[string]bool, len(ms))
		// The change tracker knows which rooms were written to since when
		// this process is the only writer; otherwise ask the store.
		known := b.known
		for _, m := range ms {
			if m.Membership != "join" {
				continue
			}
			if known {
				changed[m.RoomID] = f.t.Changed(roomKey(changes.RoomEvents, m.RoomID), b.since, b.upto)
			}
		}
		if !known {
			changedByQuery = true
			ids, err := b.s.store.ChangedRooms(b.ctx, b.since, b.upto)
			if err != nil {
				return err
			}
			clear(changed)
			for _, id := range ids {
				changed[id] = true
			}
		}
	}
	rf := b.req.Filter.RoomFilter()
	for _, m := range ms {
		if m.Pos > b.upto || !rf.MatchRoom(m.RoomID) {
			continue // committed after this sync's upper bound: next time
		}
		switch m.Membership {
		case "join":
			b.joined = append(b.joined, m.RoomID)
			if changed != nil && !changed[m.RoomID] {
				continue
			}
			jr, err := b.joinedRoom(m)
			if err != nil {
				return err
			}
			if jr != nil && (changedByQuery || m.Pos > b.since || len(jr.Timeline.Events) > 0 || len(jr.State.Events) > 0) {
				// (The room service's "may have changed" is a false alarm
				// when the write it saw lands after upto: nothing to send.)
				b.resp.Rooms.Join[m.RoomID] = jr
			}
		case "invite":
			if (b.initial || m.Pos > b.since) && !b.fromIgnored(m) {
				ir, err := b.strippedRoom(m)
				if err != nil {
					return err
				}
				b.resp.Rooms.Invite[m.RoomID] = &InvitedRoom{InviteState: StateEvents{Events: ir}}
			}
		case "knock":
			if b.initial || m.Pos > b.since {
				kr, err := b.strippedRoom(m)
				if err != nil {
					return err
				}
				b.resp.Rooms.Knock[m.RoomID] = &KnockedRoom{KnockState: StateEvents{Events: kr}}
			}
		case "leave", "ban":
			if m.Forgotten && b.initial {
				// A forgotten room is gone from initial syncs; an incremental
				// sync from before the leave still reports the leave (Synapse).
				continue
			}
			if (b.initial && b.req.Filter.IncludeLeave()) || (!b.initial && m.Pos > b.since) {
				lr, err := b.leftRoom(m)
				if err != nil {
					return err
				}
				if lr != nil {
					b.resp.Rooms.Leave[m.RoomID] = lr
				}
			}
		}
	}
	return nil
}

// timeline loads the newest events of a room in (after, upto], at most
// limit, oldest first, and whether older ones were left out.
//
// complete reports that evs is every event of the room in the range: no
// filter applied, nothing left out.
func (b *builder) timeline(roomID string, after, upto int64) (evs []store.StoredEvent, limited, complete bool, err error) {
	tf := b.req.Filter.Timeline()
	limit := tf.LimitOr(DefaultTimelineLimit, MaxTimelineLimit)
	q := store.RoomEventsQuery{RoomID: roomID, After: after, Before: upto + 1, Backwards: true, Limit: limit + 1}
	inGo := false // some filter parts the store cannot apply are matched here
	if tf != nil {
		if !tf.MatchRoom(roomID) {
			return nil, false, false, nil
		}
		if (tf.Types != nil && len(tf.Types) == 0) || (tf.Senders != nil && len(tf.Senders) == 0) {
			return nil, false, false, nil
		}
		q.Senders, q.NotSenders, q.ContainsURL = tf.Senders, tf.NotSenders, tf.ContainsURL
		if storeCanMatch(tf.Types) && storeCanMatch(tf.NotTypes) {
			q.Types, q.NotTypes = tf.Types, tf.NotTypes
		} else {
			inGo = true
		}
	}
	if limit == 0 {
		return nil, false, false, nil
	}
	unfiltered := !inGo && q.Types == nil && q.NotTypes == nil && q.Senders == nil && q.NotSenders == nil && q.ContainsURL == nil
	var fromMemory bool
	if unfiltered {
		// The room's latest events are usually in the room service's
		// memory (room/positions.go): the same answer without the store.
		evs, fromMemory = b.s.rooms.RecentEvents(roomID, after, upto, limit+1)
	}
	if !fromMemory {
		if evs, err = b.s.store.RoomEvents(b.ctx, q); err != nil {
			return nil, false, false, err
		}
	}
	limited = len(evs) > limit
	complete = !limited && !inGo && q.Types == nil && q.NotTypes == nil && q.Senders == nil && q.NotSenders == nil && q.ContainsURL == nil
	if limited {
		evs = evs[:limit]
	}
	if after > 0 && len(evs) > 0 && b.s.fast.t.Changed(roomKey(changes.RoomGap, roomID), after, upto) {
		// A hole in the room's history here (events taken after a gap
		// this server could not fetch): the timeline ends at it and is
		// limited, so the client pages back (which backfills) rather than
		// showing what follows the hole as following what it had — as
		// Synapse does (Complement's TestSyncTimelineGap). An initial
		// sync is not cut: its timeline shows the room's latest events.
		gap, err := b.s.store.LatestTimelineGap(b.ctx, roomID, after, upto)
		if err != nil {
			return nil, false, false, err
		}
		if gap > 0 {
			limited, complete = true, false
			for i := range evs { // newest first
				if evs[i].Pos < gap {
					evs = evs[:i]
					break
				}
			}
		}
	}
	if inGo {
		kept := evs[:0]
		for _, e := range evs {
			if tf.EventFilter.Match(e.Type, e.Sender) {
				kept = append(kept, e)
			}
		}
		evs = kept
	}
	var ignored map[string]bool
	if len(evs) > 0 {
		if ignored, err = b.ignoredUsers(); err != nil {
			return nil, false, false, err
		}
	}
	if len(ignored) > 0 {
		kept := evs[:0]
		for _, e := range evs {
			if e.StateKey != nil || !ignored[e.Sender] {
				kept = append(kept, e)
			} else {
				complete = false
			}
		}
		evs = kept
	}
	slices.Reverse(evs)
	return evs, limited, complete, nil
}

// fromIgnored reports whether membership m (an invite) was sent by a user
// the syncing user ignores: such invites are not sent to clients.
func (b *builder) fromIgnored(m store.Membership) bool {
	if ignored, err := b.ignoredUsers(); err != nil || len(ignored) == 0 {
		return false
	}
	e, err := b.s.rooms.AnyEvent(b.ctx, m.EventID) // a remote invite is an outlier
	return err == nil && b.ignored[e.Sender]
}

// ignoredUsers loads the syncing user's ignore list on first need: most
// syncs have no event to filter, and the lookup is a query.
func (b *builder) ignoredUsers() (map[string]bool, error) {
	if b.ignoredLoaded || b.s.src.Ignored == nil {
		return b.ignored, nil
	}
	f := &b.s.fast
	k := userKey(changes.AccountData, b.req.UserID)
	ig, ok := cached(f, f.ignored, b.req.UserID, k)
	if !ok {
		tick := f.t.Tick()
		var err error
		if ig, err = b.s.src.Ignored(b.ctx, b.req.UserID); err != nil {
			return nil, err
		}
		keep(f, f.ignored, b.req.UserID, k, tick, ig)
	}
	b.ignored, b.ignoredLoaded = ig, true
	return ig, nil
}

// storeCanMatch reports whether the store can apply type patterns itself:
// exact types, or a single trailing "*".
func storeCanMatch(patterns []string) bool {
	for _, p := range patterns {
		if i := strings.IndexByte(p, '*'); i >= 0 && i != len(p)-1 {
			return false
		}
	}
	return true
}

func (b *builder) joinedRoom(m store.Membership) (*JoinedRoom, error) {
	newlyJoined := b.initial || m.Pos > b.since
	// A room joined since the last sync is new to the client: like Synapse,
	// send its recent history (as far as history visibility allows), not
	// only what happened after the since token.
	after := b.since
	if newlyJoined {
		after = 0
	}
	evs, limited, complete, err := b.timeline(m.RoomID, after, b.upto)
	if err != nil {
		return nil, err
	}
	if newlyJoined && !b.initial && !limited && len(evs) > 0 {
		// The filter may have hidden older events; the client should know
		// there is history before this timeline.
		older, err := b.s.store.RoomEvents(b.ctx, store.RoomEventsQuery{RoomID: m.RoomID, Before: evs[0].Pos, Backwards: true, Limit: 1})
		if err != nil {
			return nil, err
		}
		limited = len(older) > 0
	}
	// Events from before the user's join may be hidden by history visibility.
	if len(evs) > 0 && evs[0].Pos < m.Pos {
		vis, err := b.s.rooms.Visibility(b.ctx, m.RoomID, b.req.UserID)
		if err != nil {
			return nil, err
		}
		evs = vis.Filter(evs)
	}
	if !b.initial {
		if m.Pos > b.since {
			if users, err := b.s.rooms.JoinedMembers(b.ctx, m.RoomID); err == nil {
				b.newlyShared = append(b.newlyShared, users...)
			}
		} else {
			for i := range evs {
				if e := &evs[i]; e.Type == "m.room.member" && e.Membership == "join" && e.StateKey != nil && e.Pos > b.since {
					b.newlyShared = append(b.newlyShared, *e.StateKey)
				}
			}
		}
	}
	jr := &JoinedRoom{}
	jr.Timeline.Limited = limited
	start := b.upto + 1 // the point the timeline starts at
	if len(evs) > 0 {
		start = evs[0].Pos
	}
	jr.Timeline.PrevBatch = "t" + itoa(start-1)
	if !limited {
		// A timeline that holds everything since the last sync (or the
		// whole room) has the sync's own position as prev_batch, as
		// Synapse gives (its _load_filtered_recents moves the token before
		// the first event only for a limited timeline): /members?at= of it
		// is the membership now, not the empty state before the room's
		// creation (Complement's TestGetRoomMembersAtPoint). Paging back
		// from it returns the timeline's events again; clients drop what
		// they hold.
		jr.Timeline.PrevBatch = "t" + itoa(b.upto)
	}
	jr.Timeline.Events, err = b.s.rooms.ClientEventsKnowing(b.ctx, evs, b.req.UserID, b.req.DeviceID, false, &m)
	if err != nil {
		return nil, err
	}
	var state []store.StoredEvent
	switch {
	case newlyJoined || b.req.FullState:
		state, err = b.s.store.StateAt(b.ctx, m.RoomID, start-1)
	case b.s.fast.t.Changed(roomKey(changes.RoomResolved, m.RoomID), b.since, b.upto):
		// State resolution changed the room's state without an event at a
		// new position (a fork merged): compare the states themselves.
		state, err = b.stateDelta(m.RoomID, start, evs)
	case limited:
		state, err = b.s.store.StateBetween(b.ctx, m.RoomID, b.since, start)
	}
	if err != nil {
		return nil, err
	}
	state = b.filterState(state, evs, newlyJoined || b.req.FullState)
	jr.State.Events, err = b.s.rooms.ClientEventsKnowing(b.ctx, state, b.req.UserID, b.req.DeviceID, false, &m)
	if err != nil {
		return nil, err
	}
	// Most syncs follow a message or two: counted from memory when the
	// room service kept their notifications and no read point moved.
	u, ok := b.s.unread.extend(b.s.fast.t, m.RoomID, b.req.UserID, b.upto, func(from, to int64) ([]store.PushAction, bool) {
		if acts, ok := b.s.rooms.RecentPush(m.RoomID, b.req.UserID, from, to); ok {
			return acts, true
		}
		if !complete || from < after {
			return nil, false
		}
		// evs is every event of the room in (after, upto]: those after
		// from, if this process wrote them, have their notifications kept.
		var positions []int64
		for i := range evs {
			if evs[i].Pos > from && evs[i].Pos <= to {
				positions = append(positions, evs[i].Pos)
			}
		}
		return b.s.rooms.RecentPushAt(m.RoomID, b.req.UserID, positions)
	})
	if !ok {
		if u, err = b.s.unread.counts(b.ctx, b.s.store, m.RoomID, b.req.UserID, b.upto); err != nil {
			return nil, err
		}
	}
	b.setUnread(jr, u)
	if newlyJoined || hasMemberEvent(evs) || hasMemberEvent(state) {
		jr.Summary, err = b.summary(m.RoomID)
		if err != nil {
			return nil, err
		}
	}
	return jr, nil
}

// stateDelta is an incremental sync's state section when state resolution
// may have changed the room's state in (since, upto]: per (type, state_key),
// the state at the timeline's end if the timeline does not carry it and the
// client did not have it at since, else the state at the timeline's start
// on the same terms — as Synapse computes it ((end ∪ start) − previous −
// timeline). A state event made current again by a resolution (one the
// client saw replaced, or a soft-failed one it never saw) is in it though
// its position is old or negative.
func (b *builder) stateDelta(roomID string, start int64, timeline []store.StoredEvent) ([]store.StoredEvent, error) {
	prev, err := b.s.store.StateAt(b.ctx, roomID, b.since)
	if err != nil {
		return nil, err
	}
	atStart, err := b.s.store.StateAt(b.ctx, roomID, start-1)
	if err != nil {
		return nil, err
	}
	atEnd, err := b.s.store.StateAt(b.ctx, roomID, b.upto)
	if err != nil {
		return nil, err
	}
	type key struct{ typ, stateKey string }
	keyOf := func(e *store.StoredEvent) key {
		if e.StateKey == nil {
			return key{e.Type, ""}
		}
		return key{e.Type, *e.StateKey}
	}
	had := make(map[key]string, len(prev))
	for i := range prev {
		had[keyOf(&prev[i])] = prev[i].EventID
	}
	inTimeline := make(map[string]bool, len(timeline))
	for i := range timeline {
		inTimeline[timeline[i].EventID] = true
	}
	news := func(e *store.StoredEvent) bool { return !inTimeline[e.EventID] && had[keyOf(e)] != e.EventID }
	var out []store.StoredEvent
	taken := map[key]bool{}
	for i := range atEnd {
		if e := &atEnd[i]; news(e) {
			out = append(out, *e)
			taken[keyOf(e)] = true
		}
	}
	for i := range atStart {
		if e := &atStart[i]; !taken[keyOf(e)] && news(e) {
			out = append(out, *e)
		}
	}
	return out, nil
}

// filterState applies the state filter and lazy loading: with
// lazy_load_members only the member events of the timeline's senders (and
// the user's own) are sent; state already in the timeline is not repeated.
func (b *builder) filterState(state, timeline []store.StoredEvent, full bool) []store.StoredEvent {
	sf := b.req.Filter.State()
	lazy := b.req.Filter.LazyLoadMembers()
	inTimeline := make(map[string]bool, len(timeline))
	senders := map[string]bool{b.req.UserID: true}
	for i := range timeline {
		inTimeline[timeline[i].EventID] = true
		senders[timeline[i].Sender] = true
	}
	out := state[:0:0]
	for i := range state {
		e := &state[i]
		if inTimeline[e.EventID] || !sf.Match(e.RoomID, e.Type, e.Sender, false) {
			continue
		}
		if lazy && e.Type == "m.room.member" && e.StateKey != nil && !senders[*e.StateKey] {
			continue
		}
		out = append(out, *e)
	}
	return out
}

func hasMemberEvent(evs []store.StoredEvent) bool {
	for i := range evs {
		if evs[i].Type == "m.room.member" {
			return true
		}
	}
	return false
}

// summary builds the room summary (heroes and member counts) lazy-loading
// clients use to name rooms.
func (b *builder) summary(roomID string) (*RoomSummary, error) {
	state, err := b.s.rooms.CurrentState(b.ctx, roomID)
	if err != nil {
		return nil, err
	}
	sum := &RoomSummary{Heroes: []string{}}
	for _, p := range state {
		if p.Type != "m.room.member" || p.StateKey == nil {
			continue
		}
		var c struct {
			Membership string `json:"membership"`
		}
		json.Unmarshal(p.Content, &c)
		switch c.Membership {
		case "join":
			sum.Joined++
		case "invite":
			sum.Invited++
		default:
			continue
		}
		if *p.StateKey != b.req.UserID {
			sum.Heroes = append(sum.Heroes, *p.StateKey)
		}
	}
	slices.Sort(sum.Heroes)
	if len(sum.Heroes) > 5 {
		sum.Heroes = sum.Heroes[:5]
	}
	return sum, nil
}

// strippedTypes are the state events shown with an invite or knock
// (Client-Server API "Stripped state").
var strippedTypes = []string{"m.room.create", "m.room.join_rules", "m.room.name", "m.room.avatar", "m.room.canonical_alias", "m.room.encryption", "m.room.topic"}

func (b *builder) strippedRoom(m store.Membership) ([]json.RawMessage, error) {
	var out []json.RawMessage
	if rm, err := b.remoteMembership(m); err != nil || rm != nil {
		// A room this server is not in: what the inviting (or knocked-on)
		// server told of it, and the membership event.
		if err != nil {
			return nil, err
		}
		if len(rm.StrippedState) > 0 && json.Unmarshal(rm.StrippedState, &out) != nil {
			out = nil
		}
		for i, raw := range out {
			out[i] = clientStripped(raw)
		}
		self, err := b.s.rooms.AnyEvent(b.ctx, m.EventID)
		if err != nil {
			return nil, err
		}
		return append(out, event.AppendClientEventWithoutRoomID(nil, self, nil)), nil
	}
	add := func(p *event.PDU) {
		sk := ""
		if p.StateKey != nil {
			sk = *p.StateKey
		}
		ev := map[string]any{"type": p.Type, "state_key": sk, "content": p.Content, "sender": p.Sender}
		if p.Type == "m.room.create" {
			// MSC4311 (Matrix 1.16): the create event in stripped state
			// is the full event, so a client can tell the room's version
			// and creators before joining.
			ev["event_id"], ev["origin_server_ts"] = p.EventID, p.OriginServerTS
		}
		j, _ := json.Marshal(ev)
		out = append(out, j)
	}
	for _, t := range strippedTypes {
		p, err := b.s.rooms.CurrentStateEvent(b.ctx, m.RoomID, t, "")
		if err != nil {
			return nil, err
		}
		if p != nil {
			add(p)
		}
	}
	// The membership event itself, and the inviter's member event.
	self, err := b.s.rooms.AnyEvent(b.ctx, m.EventID)
	if err != nil {
		return nil, err
	}
	if self.Sender != b.req.UserID {
		if p, err := b.s.rooms.CurrentStateEvent(b.ctx, m.RoomID, "m.room.member", self.Sender); err == nil && p != nil {
			add(p)
		}
	}
	out = append(out, event.AppendClientEventWithoutRoomID(nil, self, nil))
	return out, nil
}

// clientStripped turns one stripped state event another server sent (a
// full PDU since Server-Server API v1.16, or the older {type, state_key,
// content, sender}) into what clients get: those four keys, and for the
// create event its origin_server_ts too (MSC4311). Anything unreadable is
// passed on as it came.
func clientStripped(raw json.RawMessage) json.RawMessage {
	var ev struct {
		Type     string          `json:"type"`
		StateKey *string         `json:"state_key"`
		Content  json.RawMessage `json:"content"`
		Sender   string          `json:"sender"`
		EventID  string          `json:"event_id,omitempty"`
		TS       int64           `json:"origin_server_ts,omitempty"`
	}
	if json.Unmarshal(raw, &ev) != nil || ev.StateKey == nil {
		return raw
	}
	if ev.Type != "m.room.create" {
		ev.EventID, ev.TS = "", 0
	}
	out, err := json.Marshal(ev)
	if err != nil {
		return raw
	}
	return out
}

// remoteMembership returns the user's membership m when it is in a room
// this server is not in (nil otherwise).
func (b *builder) remoteMembership(m store.Membership) (*store.RemoteMembership, error) {
	rm, err := b.s.rooms.RemoteMembership(b.ctx, m.RoomID, b.req.UserID)
	if err != nil || rm == nil {
		return nil, err
	}
	if rm.Event.EventID != m.EventID {
		// A newer remote membership replaced m after this sync's upper
		// bound (an invite rescinded meanwhile), or m is a membership of
		// a room this server has since joined. Only in the second case is
		// m a local room's.
		known, err := b.s.rooms.Known(b.ctx, m.RoomID)
		if err != nil || known {
			return nil, err
		}
	}
	return rm, nil
}

func (b *builder) leftRoom(m store.Membership) (*LeftRoom, error) {
	if rm, err := b.remoteMembership(m); err != nil {
		return nil, err
	} else if rm != nil {
		// A rejected invite or withdrawn knock of a room this server is
		// not in: the leave is all there is to show.
		self, err := b.s.rooms.AnyEvent(b.ctx, m.EventID)
		if err != nil {
			return nil, err
		}
		lr := &LeftRoom{}
		lr.Timeline.Events = []json.RawMessage{event.AppendClientEventWithoutRoomID(nil, self, nil)}
		lr.Timeline.PrevBatch = "t" + itoa(m.Pos-1)
		return lr, nil
	}
	after := b.since
	if b.initial {
		after = 0
	}
	evs, limited, _, err := b.timeline(m.RoomID, after, m.Pos)
	if err != nil {
		return nil, err
	}
	vis, err := b.s.rooms.Visibility(b.ctx, m.RoomID, b.req.UserID)
	if err != nil {
		return nil, err
	}
	evs = vis.Filter(evs)
	lr := &LeftRoom{}
	lr.Timeline.Limited = limited
	// With an empty timeline the state runs up to and including the leave
	// itself, so the client still learns that it left.
	start := m.Pos + 1
	if len(evs) > 0 {
		start = evs[0].Pos
	}
	lr.Timeline.PrevBatch = "t" + itoa(start-1)
	if lr.Timeline.Events, err = b.s.rooms.ClientEvents(b.ctx, evs, b.req.UserID, b.req.DeviceID, false); err != nil {
		return nil, err
	}
	var state []store.StoredEvent
	if limited || b.initial {
		state, err = b.s.store.StateBetween(b.ctx, m.RoomID, after, start)
		if err != nil {
			return nil, err
		}
	}
	state = b.filterState(state, evs, true)
	if lr.State.Events, err = b.s.rooms.ClientEvents(b.ctx, state, b.req.UserID, b.req.DeviceID, false); err != nil {
		return nil, err
	}
	return lr, nil
}

func (b *builder) accountData() error {
	since := b.since
	if b.initial {
		since = 0
	}
	if b.known && !b.s.fast.t.Changed(userKey(changes.AccountData, b.req.UserID), b.since, b.upto) {
		return nil
	}
	items, err := b.s.store.AccountDataSince(b.ctx, b.req.UserID, since)
	if err != nil {
		return err
	}
	if b.initial && b.s.src.AccountDataDefaults != nil {
		for typ, c := range b.s.src.AccountDataDefaults(b.req.UserID) {
			if !slices.ContainsFunc(items, func(it store.AccountDataItem) bool { return it.RoomID == "" && it.Type == typ }) {
				items = append(items, store.AccountDataItem{Type: typ, Content: c})
			}
		}
	}
	for _, it := range items {
		if it.Pos > b.upto {
			continue
		}
		j, _ := json.Marshal(map[string]any{"type": it.Type, "content": it.Content})
		if it.RoomID == "" {
			if b.req.Filter.AccountDataFilter().MatchType(it.Type) {
				b.resp.AccountData.Events = append(b.resp.AccountData.Events, j)
			}
			continue
		}
		if f := b.req.Filter.RoomAccountData(); f != nil && (!f.MatchRoom(it.RoomID) || !f.MatchType(it.Type)) {
			continue
		}
		jr := b.resp.Rooms.Join[it.RoomID]
		if jr == nil {
			if !slices.Contains(b.joined, it.RoomID) {
				continue
			}
			jr = &JoinedRoom{}
			b.resp.Rooms.Join[it.RoomID] = jr
		}
		jr.AccountData.Events = append(jr.AccountData.Events, j)
	}
	return nil
}

func (b *builder) typing(serial int64) int64 {
	if b.s.src.Typing == nil {
		return 0
	}
	if b.initial {
		serial = 0
	}
	changed, cur := b.s.src.Typing(b.joined, serial)
	if serial > cur {
		// A token from before a restart: send everyone's current state.
		changed, cur = b.s.src.Typing(b.joined, 0)
	}
	for roomID, users := range changed {
		if users == nil {
			users = []string{}
		}
		j, _ := json.Marshal(map[string]any{"type": "m.typing", "content": map[string]any{"user_ids": users}})
		b.joinedEntry(roomID).Ephemeral.Events = append(b.joinedEntry(roomID).Ephemeral.Events, j)
	}
	return cur
}

func (b *builder) joinedEntry(roomID string) *JoinedRoom {
	jr := b.resp.Rooms.Join[roomID]
	if jr == nil {
		jr = &JoinedRoom{}
		b.resp.Rooms.Join[roomID] = jr
	}
	return jr
}

func (b *builder) receipts() error {
	if b.s.src.Receipts == nil || len(b.joined) == 0 {
		return nil
	}
	since := b.since
	if b.initial {
		since = 0
	}
	if b.known && !b.membershipChanged {
		keys := make([]changes.Key, len(b.joined))
		for i, id := range b.joined {
			keys[i] = roomKey(changes.Receipts, id)
		}
		if !b.s.fast.t.ChangedAny(keys, b.since, b.upto) {
			return nil
		}
	}
	rows, err := b.s.store.ReceiptsSince(b.ctx, b.joined, since)
	if err != nil {
		return err
	}
	kept := rows[:0]
	for _, r := range rows {
		if r.Pos <= b.upto {
			kept = append(kept, r)
		}
	}
	for roomID, content := range b.s.src.Receipts(b.req.UserID, kept) {
		j, _ := json.Marshal(map[string]any{"type": "m.receipt", "content": content})
		jr := b.joinedEntry(roomID)
		jr.Ephemeral.Events = append(jr.Ephemeral.Events, j)
	}
	// The user's own read receipt (from any device) moved the read point:
	// send the room's new counts, like Synapse, so every device clears its
	// badge without waiting for the next message.
	for _, r := range kept {
		if r.UserID != b.req.UserID || (r.Type != "m.read" && r.Type != "m.read.private") {
			continue
		}
		jr := b.joinedEntry(r.RoomID)
		if jr.UnreadNotifications != nil {
			continue
		}
		u, err := b.s.unread.counts(b.ctx, b.s.store, r.RoomID, b.req.UserID, b.upto)
		if err != nil {
			return err
		}
		b.setUnread(jr, u)
	}
	return nil
}

func (b *builder) e2ee() error {
	since := b.since
	if b.initial {
		since = 0
	}
	f := &b.s.fast
	user, device := b.req.UserID, b.req.DeviceID
	if counts := b.s.src.E2EECounts; counts != nil && b.noToDevice() {
		k := userKey(changes.KeyCounts, user)
		kc, ok := cached(f, f.keyCounts, deviceKey{user, device}, k)
		if !ok {
			tick := f.t.Tick()
			var err error
			if kc.otk, kc.fallback, err = counts(b.ctx, user, device); err != nil {
				return err
			}
			keep(f, f.keyCounts, deviceKey{user, device}, k, tick, kc)
		}
		b.resp.OTKCounts = kc.otk
		b.resp.FallbackKeyTypes = kc.fallback
	} else if e2ee := b.s.src.E2EE; e2ee != nil {
		evs, next, counts, fallback, err := e2ee(b.ctx, user, device, since, b.upto)
		if err != nil {
			return err
		}
		// Everything up to since is deleted now.
		f.setAcked(user, device, since)
		if next > since && next < b.upto {
			b.upto = next
		}
		b.resp.ToDevice.Events = append(b.resp.ToDevice.Events, evs...)
		b.resp.OTKCounts = counts
		b.resp.FallbackKeyTypes = fallback
	}
	return nil
}

// noToDevice reports that the device has no to-device message to receive in
// this sync's range and none delivered before that awaits its deletion
// (fastpath.go), so the to-device query can be skipped.
func (b *builder) noToDevice() bool {
	if !b.known {
		return false
	}
	acked, ok := b.s.fast.ackedThrough(b.req.UserID, b.req.DeviceID)
	if !ok {
		return false
	}
	from := min(b.since, acked)
	t := b.s.fast.t
	return t.Known(from) && !t.Changed(userKey(changes.ToDevice, b.req.UserID), from, b.upto)
}

// deviceLists fills device_lists (incremental syncs only). Runs after rooms:
// the query is skipped when the tracker knows that no device or key of the
// user changed, nor those of anyone in any room the user has a membership
// in, and that no membership in those rooms (the user's own included)
// changed — then nobody began or stopped sharing a room with the user
// either. Every room counts, whatever the sync's filter shows.
func (b *builder) deviceLists() error {
	f := b.s.src.DeviceLists
	if f == nil || b.initial {
		return nil
	}
	if b.known && !b.membershipChanged && !b.deviceListsMayHaveChanged() {
		b.resp.DeviceLists.Changed = []string{}
		b.resp.DeviceLists.Left = []string{}
		return nil
	}
	changed, left, err := f(b.ctx, b.req.UserID, b.since, b.upto)
	if err != nil {
		return err
	}
	b.resp.DeviceLists.Changed = append(b.resp.DeviceLists.Changed, changed...)
	b.resp.DeviceLists.Left = append(b.resp.DeviceLists.Left, left...)
	return nil
}

func (b *builder) deviceListsMayHaveChanged() bool {
	t := b.s.fast.t
	if t.Flying(changes.Key{Kind: changes.DeviceLists}, b.upto) {
		return true // a change whose rooms are not all marked yet
	}
	keys := make([]changes.Key, 0, 2*len(b.memberships)+3)
	keys = append(keys, userKey(changes.UserDevices, b.req.UserID), userKey(changes.Memberships, b.req.UserID), changes.AnyDeviceListChange)
	for _, m := range b.memberships {
		keys = append(keys, roomKey(changes.DeviceLists, m.RoomID), roomKey(changes.RoomMembers, m.RoomID))
	}
	return t.ChangedAny(keys, b.since, b.upto)
}

// mergePresence appends the events of extra whose sender is not already in
// evs (one presence event per user).
func mergePresence(evs, extra []json.RawMessage) []json.RawMessage {
	seen := map[string]bool{}
	sender := func(e json.RawMessage) string {
		var p struct {
			Sender string `json:"sender"`
		}
		json.Unmarshal(e, &p)
		return p.Sender
	}
	for _, e := range evs {
		seen[sender(e)] = true
	}
	for _, e := range extra {
		if u := sender(e); !seen[u] {
			seen[u] = true
			evs = append(evs, e)
		}
	}
	return evs
}
