// Package room owns rooms: it is the one writer per room. Every event a local
// user causes (createRoom, messages, state, membership, redactions) is built
// here as a real PDU for the room's version, checked against the
// authorisation rules with the room's current state, persisted in one
// transaction, applied to the in-memory state, and announced to the notifier.
package room

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"conclave/internal/accessrules"
	"conclave/internal/authrules"
	"conclave/internal/changes"
	"conclave/internal/event"
	"conclave/internal/lru"
	"conclave/internal/matrix"
	"conclave/internal/store"
)

// Store is what the room service persists through.
type Store interface {
	store.Rooms
	store.Events
	store.Graph
	store.RemoteMemberships
	store.StateHistory
	store.RoomsRead
	store.Profiles
}

// Notice tells the notifier that events were committed in a room, and which
// users should wake: the joined members plus the targets of membership changes.
type Notice struct {
	RoomID string
	Pos    int64 // position of the last event
	Users  []string
	// Members are the users whose membership the events changed.
	Members []string
}

// Service is the room service.
type Service struct {
	store      Store
	serverName string
	key        *event.SigningKey
	now        func() time.Time
	// Notify is called after each commit (nil: nobody listens).
	Notify func(Notice)
	// Outgoing is called, under the room's writer lock and right after the
	// commit, with the events this server made and the other servers that
	// must receive them (nil: federation is off). Called under the lock, it
	// queues each room's events in the order they were written.
	Outgoing func(roomID string, pdus []*event.PDU, servers []string)
	// FedCommitted, when set, makes the events this server writes through
	// PersistEvents or CreateRoom go to the other servers in their room by
	// the store: each is queued for them in the transaction that writes it
	// (store.NewEvent.Fed), so no death or failure after the commit loses
	// it. FedCommitted is then called, under the room's writer lock and
	// right after the commit, with those servers, to start the sending
	// (fedsender.Sender.Committed); Outgoing is not called for them. The
	// queue order is the commit order, each room's events in the order
	// written (the writer lock).
	FedCommitted func(servers []string)
	// PushActions, when set, returns the notifications an event about to
	// be written causes (push.Bulk): they are written in the event's
	// transaction (push.go).
	PushActions func(ctx context.Context, v PushView, pdu *event.PDU, membership string) []store.PushAction
	// InviteRemote has another server's user sign their invite (invite.go);
	// nil: such invites are built and sent like any event.
	InviteRemote InviteRemote
	// RemoteHierarchy asks other servers about the rooms of a space this
	// server is not in (hierarchy.go); nil: such rooms are left out.
	RemoteHierarchy RemoteHierarchy
	spacesOnce      sync.Once
	spaces          *lru.Cache[string, cachedSpace]
	// OnUpgradedRoomJoin is called after the commit of a local user's join
	// to a room that replaces another (m.room.create predecessor), so the
	// user's settings for the old room follow (upgradejoin.go).
	OnUpgradedRoomJoin func(userID, oldRoomID, newRoomID string)
	// EncryptPresets are the createRoom presets whose rooms get
	// m.room.encryption by default (config encrypt_presets).
	EncryptPresets map[string]bool
	// RequireEncryption refuses unencrypted non-public rooms and any change
	// that would remove or weaken m.room.encryption (config require_encryption).
	RequireEncryption bool
	// AccessRules are the room access rules (internal/accessrules), checked
	// on every local event and every received one against the current
	// state; nil: none.
	AccessRules *accessrules.Policy
	// SkipAggregations turns off bundled aggregations (unsigned.m.relations).
	SkipAggregations bool
	// Changes, when set (TrackChanges), has every write marked before it
	// commits (recent.go).
	Changes *changes.Tracker
	// ReadBarrier, when set (several processes share the database), waits
	// until this process has heard every write committed so far: see Fresh.
	ReadBarrier func(ctx context.Context) error

	mu        sync.Mutex
	rooms     map[string]*roomEntry // bounded: entries.go
	recency   roomEntry             // sentinel of the recency list (most recent first)
	maxStates int
	// stateEvents: the state events of the kept rooms, as last counted.
	stateEvents, maxStateEvents int

	parsed eventCache
	recent recentCache

	// ResolveState resolves several states of a room (receive.go); nil
	// refuses events that would need it.
	ResolveState StateResolver
	groupsOnce   sync.Once
	groupCache   *lru.Cache[int64, StateMap] // state groups read (receive.go)
}

// roomEntry is one room's writer lock and its lazily loaded state, kept in
// a bounded cache (entries.go).
type roomEntry struct {
	mu    sync.Mutex
	state *roomState // nil until loaded; guarded by mu
	// invalid is set (without the lock) when another process sharing the
	// database changed the room: the state is reloaded on next lock.
	invalid atomic.Bool

	// Guarded by Service.mu: the goroutines holding or waiting for mu (an
	// entry is forgotten only when none does), and the recency list.
	id         string
	pins       int
	size       int // state events when last unpinned, counted in Service.stateEvents
	prev, next *roomEntry
}

// New returns the room service.
func New(st Store, serverName string, key *event.SigningKey) *Service {
	s := &Service{store: st, serverName: serverName, key: key, now: time.Now, rooms: make(map[string]*roomEntry), maxStates: DefaultMaxRoomStates, maxStateEvents: DefaultMaxStateEvents}
	s.recency.next, s.recency.prev = &s.recency, &s.recency
	s.parsed.init(50000)
	return s
}

// ServerName is the local server name.
func (s *Service) ServerName() string { return s.serverName }

// lock takes the room's writer lock and returns its state, loading it on
// first use. ErrNotFound-shaped errors come back as M_NOT_FOUND.
func (s *Service) lock(ctx context.Context, roomID string) (*roomEntry, *roomState, error) {
	e := s.entry(roomID)
	e.mu.Lock()
	// Swap before loading: an invalidation that arrives during the load
	// marks the fresh state for another reload.
	if e.invalid.Swap(false) || e.state == nil || e.state.stale {
		st, err := s.loadState(ctx, roomID)
		if err != nil {
			e.state = nil
			s.unlock(e) // a room that does not exist leaves nothing behind
			return nil, nil, err
		}
		e.state = st
	}
	return e, e.state, nil
}

// Fresh makes the reads that follow see every write any process had
// acknowledged before it was called. With one process they do anyway; with
// several, a room's state here follows the others' writes as their
// notifications arrive (homeserver/cluster.go), so a client that wrote
// through one process and reads through another waits here for them.
func (s *Service) Fresh(ctx context.Context) error {
	if s.ReadBarrier == nil {
		return nil
	}
	return s.ReadBarrier(ctx)
}

// Invalidate marks a room's in-memory state stale: another process sharing
// the database wrote to it. It is reloaded from the store on next use.
func (s *Service) Invalidate(roomID string) {
	s.mu.Lock()
	e := s.rooms[roomID]
	s.mu.Unlock()
	if e != nil {
		e.invalid.Store(true)
	}
}

// InvalidateAll marks every room stale (invalidations may have been missed).
func (s *Service) InvalidateAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.rooms {
		e.invalid.Store(true)
	}
}

func (s *Service) loadState(ctx context.Context, roomID string) (*roomState, error) {
	snap, err := s.store.LoadRoomSnapshot(ctx, roomID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errUnknownRoom
	}
	if err != nil {
		return nil, err
	}
	rv, ok := event.GetRoomVersion(snap.Room.Version)
	if !ok {
		return nil, matrix.Errorf(http.StatusBadRequest, matrix.ErrUnsupportedRoomVer, "Room version %s is not supported", snap.Room.Version)
	}
	rs := newRoomState(roomID, rv)
	for i := range snap.State {
		pdu, err := s.parse(rv, &snap.State[i])
		if err != nil {
			return nil, err
		}
		rs.apply(pdu)
	}
	rs.extremities = snap.Extremities
	rs.depth = snap.MaxDepth
	return rs, nil
}

var errUnknownRoom = matrix.NotFound("Unknown room")

// Known reports whether this server has the room (it created or joined it),
// as opposed to knowing of it only through a remote invite or knock.
func (s *Service) Known(ctx context.Context, roomID string) (bool, error) {
	_, err := s.RoomVersion(ctx, roomID)
	if err == errUnknownRoom {
		return false, nil
	}
	return err == nil, err
}

// RoomVersion returns the version of a room this server knows.
func (s *Service) RoomVersion(ctx context.Context, roomID string) (*event.RoomVersion, error) {
	if v := s.parsed.version(roomID); v != nil {
		return v, nil
	}
	r, err := s.store.GetRoom(ctx, roomID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errUnknownRoom
	}
	if err != nil {
		return nil, err
	}
	rv, ok := event.GetRoomVersion(r.Version)
	if !ok {
		return nil, matrix.Errorf(http.StatusBadRequest, matrix.ErrUnsupportedRoomVer, "Room version %s is not supported", r.Version)
	}
	s.parsed.setVersion(roomID, rv)
	return rv, nil
}

// build fills in the room-dependent fields of proto from rs, builds and signs
// the PDU and checks it against the authorisation rules with rs as the state.
func (s *Service) build(ctx context.Context, rs *roomState, proto *event.Proto) (*event.PDU, error) {
	proto.RoomID = rs.roomID
	// Every forward extremity, newest first, at most maxPrevEvents: a room
	// with more (a hostile server can fork a room many times) merges them
	// a few at a time.
	exts := rs.extremities
	if len(exts) > maxPrevEvents {
		exts = exts[len(exts)-maxPrevEvents:]
	}
	proto.PrevEvents = append([]string(nil), exts...)
	proto.Depth = rs.depth + 1
	proto.OriginServerTS = s.now().UnixMilli()
	proto.AuthEvents = proto.AuthEvents[:0]
	for _, k := range authrules.Needed(rs.version, proto.Type, proto.StateKey, proto.Sender, proto.Content) {
		if ev := rs.StateEvent(k.Type, k.StateKey); ev != nil {
			proto.AuthEvents = append(proto.AuthEvents, ev.EventID)
		}
	}
	pdu, err := proto.Build(rs.version, s.serverName, s.key)
	if err != nil {
		return nil, buildError(err)
	}
	if err := authrules.CheckWith(pdu, rs, localVerifier{s.serverName, s.key}); err != nil {
		var ae *authrules.Error
		if errors.As(err, &ae) && malformedContentRules[ae.Rule] {
			return nil, matrix.InvalidParam("%s", err.Error())
		}
		return nil, matrix.Forbidden("%s", err.Error())
	}
	if err := s.checkAccessRules(ctx, rs, pdu); err != nil {
		return nil, err
	}
	return pdu, nil
}

// malformedContentRules are the auth rules whose rejection of a local
// event means the client's content is malformed rather than that the user
// lacks permission: 400 M_INVALID_PARAM, not 403, as Synapse answers. Room
// version 12 (MSC4289): power levels must not list a creator in users, and
// additional_creators must be an array of valid user IDs.
var malformedContentRules = map[string]bool{
	"power_levels.creator_listed": true,
	"create.additional_creators":  true,
}

func buildError(err error) error {
	if errors.Is(err, event.ErrTooLarge) {
		return matrix.TooLarge("Event is larger than %d bytes", event.MaxPDUSize)
	}
	if _, ok := matrix.AsError(err); ok {
		return err
	}
	return matrix.BadJSON("%s", err.Error())
}

// newEvent turns a built PDU into the row to persist.
func newEvent(rs *roomState, pdu *event.PDU, device, txnID string) store.NewEvent {
	ne := store.NewEvent{
		EventID:        pdu.EventID,
		RoomID:         rs.roomID,
		Type:           pdu.Type,
		StateKey:       pdu.StateKey,
		Sender:         pdu.Sender,
		Depth:          pdu.Depth,
		OriginServerTS: pdu.OriginServerTS,
		JSON:           pdu.Raw,
		Redacts:        pdu.Redacts,
		SenderDevice:   device,
		TxnID:          txnID,
		PrevEvents:     pdu.PrevEvents,
	}
	if pdu.StateKey != nil {
		if old := rs.StateEvent(pdu.Type, *pdu.StateKey); old != nil {
			ne.ReplacesState = old.EventID
		}
		if pdu.Type == "m.room.member" {
			ne.Membership, _ = authrules.Membership(pdu)
		}
	}
	ne.RelatesTo, ne.RelType, ne.ContainsURL = contentIndex(pdu.Content)
	return ne
}

// maxWriteAttempts bounds how often a write is rebuilt after another process
// sharing the database appended to the room first (store.ErrRoomChanged).
const maxWriteAttempts = 5

// errRoomChanged is what commit returns when the store refused a write
// because the room moved on; retry rebuilds the write on reloaded state.
var errRoomChanged = errors.New("room changed concurrently")

// errBusy is the answer once every attempt met a concurrent change.
var errBusy = matrix.Errorf(http.StatusServiceUnavailable, matrix.ErrUnknown, "The room changed concurrently; retry the request")

// retry runs one write attempt (lock, check, build, commit, unlock) until it
// does not fail with errRoomChanged, at most maxWriteAttempts times. Each
// attempt takes the room lock afresh, so it reloads the state commit marked
// stale and rebuilds the event on the room's new head: the client never sees
// the race, unless the room is so contended that every attempt loses.
//
// When the store is shared by several processes (store.RoomLocker), the
// whole write also holds the room's cross-process writer lock: writers from
// all processes take turns, so the one that lost a race is not starved by
// a busy process whose state is always fresh.
func (s *Service) retry(ctx context.Context, roomID string, attempt func() error) error {
	unlock, err := s.lockShared(ctx, roomID)
	if err != nil {
		return err
	}
	defer unlock()
	for i := 1; ; i++ {
		err := attempt()
		if !errors.Is(err, errRoomChanged) {
			return err
		}
		if i == maxWriteAttempts || ctx.Err() != nil {
			return errBusy
		}
	}
}

// lockShared takes the room's cross-process writer lock if the store has one.
func (s *Service) lockShared(ctx context.Context, roomID string) (func(), error) {
	if l, ok := s.store.(store.RoomLocker); ok {
		return l.LockRoom(ctx, roomID)
	}
	return func() {}, nil
}

// commit persists built events, applies them to rs and notifies. If another
// process wrote to the room since rs was loaded, rs is marked stale and
// errRoomChanged returned (callers run under retry).
func (s *Service) commit(ctx context.Context, rs *roomState, pdus []*event.PDU, rows []store.NewEvent) error {
	s.addPushActions(ctx, rs, pdus, rows)
	s.addFed(rs, pdus, rows)
	ctx, done := s.begin(ctx, rs.roomID, rows)
	positions, err := s.store.PersistEvents(ctx, rs.roomID, rows)
	if err != nil {
		positions = nil
	}
	done(positions)
	if errors.Is(err, store.ErrRoomChanged) {
		rs.stale = true
		return errRoomChanged
	}
	if err != nil {
		return err
	}
	s.afterCommit(rs, pdus, positions)
	return nil
}

func (s *Service) afterCommit(rs *roomState, pdus []*event.PDU, positions []int64) {
	// fedTargets: users whose servers get the events though they may have
	// no member joined (a kicked or banned user, one leaving).
	var targets, joined, fedTargets []string
	for _, pdu := range pdus {
		if s.newLocalJoin(rs, pdu) {
			joined = append(joined, *pdu.StateKey)
		}
		// An invitee's server had the invite through /invite (it signed
		// it); sending it again in a transaction for a room that server is
		// not in is what Synapse never does, and Dendrite v0.15.2, taking it
		// in while the invitee joins, loses the room's state.
		if pdu.Type == "m.room.member" && pdu.StateKey != nil && !kickedByOtherThanInviter(rs, pdu) && membershipOf(pdu) != "invite" {
			fedTargets = append(fedTargets, *pdu.StateKey)
		}
		rs.apply(pdu)
		rs.extremities = slices.DeleteFunc(rs.extremities, func(x string) bool { return slices.Contains(pdu.PrevEvents, x) })
		rs.extremities = append(rs.extremities, pdu.EventID)
		rs.depth = max(rs.depth, pdu.Depth)
		s.parsed.put(pdu)
		if pdu.Type == "m.room.member" && pdu.StateKey != nil {
			targets = append(targets, *pdu.StateKey)
		}
	}
	if s.Notify != nil && len(positions) > 0 {
		users := rs.joinedUsers(targets)
		s.Notify(Notice{RoomID: rs.roomID, Pos: positions[len(positions)-1], Users: users, Members: targets})
	}
	if len(positions) > 0 && (s.FedCommitted != nil || s.Outgoing != nil) {
		servers := s.otherServers(rs, fedTargets)
		switch {
		case len(servers) == 0:
		case s.FedCommitted != nil:
			s.FedCommitted(servers) // queued by the commit (addFed)
		default:
			s.Outgoing(rs.roomID, pdus, servers)
		}
	}
	s.upgradedRoomJoins(rs, joined)
}

// addFed sets the Fed destinations of the rows of pdus, about to be written
// on rs, when the store queues them (FedCommitted): the servers afterCommit
// computes, from the state after the events.
func (s *Service) addFed(rs *roomState, pdus []*event.PDU, rows []store.NewEvent) {
	if s.FedCommitted == nil {
		return
	}
	servers := s.fedServers(rs, pdus)
	if len(servers) == 0 {
		return
	}
	for i := range rows {
		rows[i].Fed = servers
	}
}

// wakeFed starts sending what earlier writes queued for the room's other
// servers. A client's retry of a request whose write committed (a duplicate
// transaction ID) may follow a death or a failure between that commit and
// its FedCommitted: nothing else would wake the sender before its safety
// tick. For a destination with nothing queued it costs one look.
func (s *Service) wakeFed(ctx context.Context, roomID string) {
	if s.FedCommitted == nil {
		return
	}
	e, rs, err := s.lock(ctx, roomID)
	if err != nil {
		return
	}
	s.wakeFedLocked(rs)
	s.unlock(e)
}

// wakeFedLocked is wakeFed under the room's lock, for a request that found
// its change made already (a retry: maybe of a write that committed and
// died before its FedCommitted).
func (s *Service) wakeFedLocked(rs *roomState) {
	if s.FedCommitted == nil {
		return
	}
	if servers := s.otherServers(rs, nil); len(servers) > 0 {
		s.FedCommitted(servers)
	}
}

// fedServers is the otherServers afterCommit computes once pdus are applied
// to rs, without changing rs (nor copying its state): the batch's member
// events override rs's memberships.
func (s *Service) fedServers(rs *roomState, pdus []*event.PDU) []string {
	var batch map[string]*event.PDU // the batch's latest member event, by user
	var targets []string
	for _, pdu := range pdus {
		if pdu.Type != "m.room.member" || pdu.StateKey == nil {
			continue
		}
		u := *pdu.StateKey
		prev, ok := batch[u]
		if !ok {
			prev = rs.StateEvent("m.room.member", u)
		}
		if !kickedByOtherThan(prev, pdu) && membershipOf(pdu) != "invite" {
			targets = append(targets, u)
		}
		if batch == nil {
			batch = map[string]*event.PDU{}
		}
		batch[u] = pdu
	}
	if batch == nil {
		return s.otherServers(rs, nil)
	}
	// Joined after the batch: rs's joined members the batch leaves alone,
	// and those it joins (as targets: otherServers adds their servers).
	for u, pdu := range batch {
		if membershipOf(pdu) == "join" {
			targets = append(targets, u)
		}
	}
	joined := &roomState{joined: make(map[string]struct{}, len(rs.joined))}
	for u := range rs.joined {
		if _, ok := batch[u]; !ok {
			joined.joined[u] = struct{}{}
		}
	}
	return s.otherServers(joined, targets)
}

// kickedByOtherThanInviter: pdu kicks (leave by another user) a user who
// was invited, and its sender is not who invited them. Such a kick is not
// sent to the invitee's server when no one there is in the room: only the
// inviter rescinds an invite (Synapse sends a rescission only from the
// inviter; Complement's "Non-invitee user cannot rescind invite over
// federation"). Called before pdu is applied to rs.
func kickedByOtherThanInviter(rs *roomState, pdu *event.PDU) bool {
	return kickedByOtherThan(rs.StateEvent("m.room.member", *pdu.StateKey), pdu)
}

// kickedByOtherThan is kickedByOtherThanInviter with the membership event
// pdu replaces (nil: none).
func kickedByOtherThan(prev, pdu *event.PDU) bool {
	if pdu.Sender == *pdu.StateKey {
		return false
	}
	if m, _ := authrules.Membership(pdu); m != "leave" {
		return false
	}
	if prev == nil {
		return false
	}
	m, _ := authrules.Membership(prev)
	return m == "invite" && prev.Sender != pdu.Sender
}

// otherServers lists the servers other than this one that must receive an
// event of the room: those of its joined members, and of the users whose
// membership it changes (a kicked or banned user; not an invitee, whose
// server had the invite through /invite).
func (s *Service) otherServers(rs *roomState, targets []string) []string {
	var out []string
	add := func(u string) {
		if srv := matrix.ServerOf(u); srv != s.serverName && srv != "" && !slices.Contains(out, srv) {
			out = append(out, srv)
		}
	}
	for u := range rs.joined {
		add(u)
	}
	for _, u := range targets {
		add(u)
	}
	slices.Sort(out)
	return out
}

// Extremities returns the room's forward extremities.
func (s *Service) Extremities(ctx context.Context, roomID string) ([]string, error) {
	e, rs, err := s.lock(ctx, roomID)
	if err != nil {
		return nil, err
	}
	defer s.unlock(e)
	return slices.Clone(rs.extremities), nil
}

// ServersInRoom lists the servers with members joined to the room, this
// one included if it has any.
func (s *Service) ServersInRoom(ctx context.Context, roomID string) ([]string, error) {
	e, rs, err := s.lock(ctx, roomID)
	if err != nil {
		return nil, err
	}
	defer s.unlock(e)
	var out []string
	for u := range rs.joined {
		if srv := matrix.ServerOf(u); !slices.Contains(out, srv) {
			out = append(out, srv)
		}
	}
	slices.Sort(out)
	return out, nil
}
