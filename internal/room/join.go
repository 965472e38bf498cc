package room

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"conclave/internal/authrules"
	"conclave/internal/event"
	"conclave/internal/matrix"
	"conclave/internal/store"
)

// Memberships across servers, the room's side (Server-Server API, "Joining
// Rooms", "Leaving Rooms", "Knocking"): this server as the resident server
// of a room a remote user joins, leaves or knocks on (make_*/send_*), and as
// the joining server importing a room another server answered send_join
// with. The HTTP and signature checks are the federation packages'.

// maxPrevEvents caps the prev_events of an event built here: a room with
// more forward extremities (a hostile server can make many) merges them a
// few at a time (Synapse cites at most 10).
const maxPrevEvents = 10

// maxAuthChain bounds an auth chain walked or imported.
const maxAuthChain = 100_000

// MembershipTemplate answers make_join, make_leave and make_knock: the
// unsigned event the remote user's server is to sign, built on the room's
// current state, and the room version. versions are the room versions the
// remote server supports (make_join's and make_knock's ver; nil: no check).
func (s *Service) MembershipTemplate(ctx context.Context, roomID, userID, membership string, versions []string) (string, json.RawMessage, error) {
	if !matrix.ValidUserID(userID) {
		return "", nil, matrix.BadJSON("Invalid user ID")
	}
	e, rs, err := s.lock(ctx, roomID)
	if err != nil {
		return "", nil, err
	}
	defer s.unlock(e)
	if !s.resident(rs) {
		return "", nil, matrix.NotFound("This server is not in room %s", roomID)
	}
	if versions != nil && !slices.Contains(versions, rs.version.ID) {
		return "", nil, matrix.Errorf(http.StatusBadRequest, matrix.ErrIncompatibleRoomVer,
			"Your server does not support room version %s", rs.version.ID).With("room_version", rs.version.ID)
	}
	content := map[string]any{"membership": membership}
	if membership == "join" {
		if via, err := s.joinAuthoriser(ctx, rs, userID); err != nil {
			return "", nil, err
		} else if via != "" {
			content["join_authorised_via_users_server"] = via
		}
	}
	raw, err := json.Marshal(content)
	if err != nil {
		return "", nil, err
	}
	sk := userID
	tentative := &event.PDU{Type: "m.room.member", StateKey: &sk, Sender: userID, RoomID: roomID, Content: raw, Version: rs.version}
	if err := authrules.CheckWith(tentative, rs, trustingVerifier{}); err != nil {
		return "", nil, matrix.Forbidden("You are not allowed to %s this room: %s", membership, err.Error())
	}
	// The access rules refuse here what send_join would soft-fail, as
	// Synapse's make_knock asks check_event_allowed (handlers/federation.py).
	if err := s.checkAccessRules(ctx, rs, tentative); err != nil {
		return "", nil, err
	}
	prev := rs.extremities
	if len(prev) > maxPrevEvents {
		prev = prev[:maxPrevEvents]
	}
	auth := []string{}
	for _, k := range authrules.Needed(rs.version, "m.room.member", &sk, userID, raw) {
		if ev := rs.StateEvent(k.Type, k.StateKey); ev != nil {
			auth = append(auth, ev.EventID)
		}
	}
	var prevRefs, authRefs any = prev, auth
	if rs.version.EventIDFormat == 1 {
		// Room versions 1 and 2: [event ID, hashes] pairs.
		pairs := func(ids []string) [][2]any {
			out := make([][2]any, len(ids))
			for i, id := range ids {
				out[i] = [2]any{id, struct{}{}}
			}
			return out
		}
		prevRefs, authRefs = pairs(prev), pairs(auth)
	}
	tmpl := map[string]any{
		"type": "m.room.member", "state_key": userID, "sender": userID, "room_id": roomID,
		"content": json.RawMessage(raw), "prev_events": prevRefs, "auth_events": authRefs,
		"depth": rs.depth + 1, "origin_server_ts": s.now().UnixMilli(), "origin": matrix.ServerOf(userID),
	}
	out, err := json.Marshal(tmpl)
	return rs.version.ID, out, err
}

// resident reports whether a user of this server is joined to the room:
// only then can it build and vouch for events there.
func (s *Service) resident(rs *roomState) bool {
	for u := range rs.joined {
		if matrix.ServerOf(u) == s.serverName {
			return true
		}
	}
	return false
}

// joinAuthoriser picks, for a join to a restricted room by a user who is
// not already invited or joined, a local member who may invite, to be named
// in join_authorised_via_users_server; "" when none is needed. The user
// must be joined to one of the rooms the join rule allows, as this server
// sees it (Client-Server API "Restricted rooms"; Server-Server API
// "Restricted rooms").
func (s *Service) joinAuthoriser(ctx context.Context, rs *roomState, userID string) (string, error) {
	if !rs.version.RestrictedJoins {
		return "", nil
	}
	rule := JoinRuleOf(rs)
	if rule != "restricted" && rule != "knock_restricted" {
		return "", nil
	}
	if m := rs.membership(userID); m == "join" || m == "invite" {
		return "", nil
	}
	allowed, residentInOne, named, err := s.inAllowedRoom(ctx, rs, userID)
	if err != nil {
		return "", err
	}
	if !allowed && !residentInOne && named {
		// This server is in none of the allowed rooms: what it knows of
		// them may be stale, so it cannot vouch either way; the joining
		// server should ask another (Server-Server API, make_join 400
		// M_UNABLE_TO_GRANT_JOIN; Synapse; Complement's restricted
		// fail-over after the resident server left the allowed room).
		return "", matrix.Errorf(http.StatusBadRequest, "M_UNABLE_TO_GRANT_JOIN", "This server is in none of the rooms the join rule allows: it cannot tell whether you may join")
	}
	if !allowed {
		return "", matrix.Forbidden("You are not in any room this room's join rule allows")
	}
	pl, err := rs.powerLevels()
	if err != nil {
		return "", err
	}
	var candidates []string
	for u := range rs.joined {
		if matrix.ServerOf(u) == s.serverName && pl.UserLevel(u) >= pl.Invite() {
			candidates = append(candidates, u)
		}
	}
	if len(candidates) == 0 {
		return "", matrix.Errorf(http.StatusBadRequest, matrix.ErrUnableToAuthoriseJoin, "No user of this server can authorise the join")
	}
	slices.Sort(candidates) // the same choice every time
	return candidates[0], nil
}

// inAllowedRoom reports whether userID is joined to a room named in the
// room's m.room.join_rules allow list that this server is in (a user of it
// joined: only then is its view of the room's members current), and
// whether this server is in any of those rooms at all, and whether the list
// names any room.
func (s *Service) inAllowedRoom(ctx context.Context, rs *roomState, userID string) (allowed, residentInOne, named bool, err error) {
	jr := rs.StateEvent("m.room.join_rules", "")
	if jr == nil {
		return false, false, false, nil
	}
	var c struct {
		Allow []struct {
			Type   string `json:"type"`
			RoomID string `json:"room_id"`
		} `json:"allow"`
	}
	if json.Unmarshal(jr.Content, &c) != nil {
		return false, false, false, nil
	}
	mems, err := s.store.UserMemberships(ctx, userID)
	if err != nil {
		return false, false, false, err
	}
	joined := map[string]bool{}
	for _, m := range mems {
		if m.Membership == "join" {
			joined[m.RoomID] = true
		}
	}
	seen := map[string]bool{}
	for _, a := range c.Allow {
		if a.Type != "m.room_membership" || seen[a.RoomID] || len(seen) >= maxAllowRooms {
			continue
		}
		seen[a.RoomID] = true
		named = true
		resident, err := s.hasLocalMember(ctx, a.RoomID)
		if err != nil {
			return false, false, true, err
		}
		if !resident {
			continue
		}
		residentInOne = true
		if joined[a.RoomID] {
			return true, true, true, nil
		}
	}
	return false, residentInOne, named, nil
}

// maxAllowRooms bounds the allowed rooms a join rule's check looks at.
const maxAllowRooms = 50

// hasLocalMember reports whether a user of this server is joined to
// roomID, from the store (the caller holds another room's lock: taking
// this room's could deadlock with a join going the other way).
func (s *Service) hasLocalMember(ctx context.Context, roomID string) (bool, error) {
	members, err := s.store.RoomMembers(ctx, roomID)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, m := range members {
		if m.Membership == "join" && matrix.ServerOf(m.UserID) == s.serverName {
			return true, nil
		}
	}
	return false, nil
}

// trustingVerifier answers yes to the signature questions: for checking a
// template before anyone signed it.
type trustingVerifier struct{}

func (trustingVerifier) EventSignedBy(*event.PDU, string) bool                 { return true }
func (trustingVerifier) ThirdPartyInviteSigned(json.RawMessage, []string) bool { return false }

// AcceptMembership answers send_join, send_leave and send_knock: the signed
// membership event of a user of origin, checked and persisted like any
// received event. A restricted join that names a user of this server as its
// authoriser is signed here first. It returns the event as stored.
func (s *Service) AcceptMembership(ctx context.Context, origin, roomID, eventID, membership string, pdu *event.PDU) (*event.PDU, error) {
	if pdu.RoomID != roomID || pdu.EventID != eventID {
		return nil, matrix.BadJSON("The event's room or ID does not match the request")
	}
	if pdu.Type != "m.room.member" || pdu.StateKey == nil || *pdu.StateKey != pdu.Sender {
		return nil, matrix.BadJSON("Not an m.room.member event about its sender")
	}
	if m, err := authrules.Membership(pdu); err != nil || m != membership {
		return nil, matrix.BadJSON("Not a %s event", membership)
	}
	if matrix.ServerOf(pdu.Sender) != origin {
		return nil, matrix.Forbidden("The event's sender is not on the requesting server")
	}
	if membership == "join" && pdu.Version.RestrictedJoins {
		var c struct {
			Via string `json:"join_authorised_via_users_server"`
		}
		if json.Unmarshal(pdu.Content, &c) == nil && c.Via != "" && matrix.ServerOf(c.Via) == s.serverName {
			signed, err := pdu.WithSignature(s.serverName, s.key)
			if err != nil {
				return nil, matrix.BadJSON("%s", err.Error())
			}
			pdu = signed
		}
	}
	got, err := s.Receive(context.WithValue(ctx, relayKey{}, relay{origin, pdu.EventID}), pdu)
	if err != nil {
		var missing *MissingEventsError
		if errors.As(err, &missing) {
			return nil, matrix.Forbidden("The event cites events this server does not have")
		}
		return nil, err
	}
	// With FedCommitted, the store queued the event for the other servers
	// in its commit (relayServers).
	if got.Outcome == Accepted && s.FedCommitted == nil && s.Outgoing != nil {
		// The joining (leaving, knocking) server talks only to this one:
		// the other servers in the room hear of the event from here
		// (Server-Server API, "Joining Rooms": the resident server sends the
		// join to the other servers in the room).
		if servers, err := s.ServersInRoom(ctx, roomID); err == nil {
			var others []string
			for _, srv := range servers {
				if srv != s.serverName && srv != origin {
					others = append(others, srv)
				}
			}
			if len(others) > 0 {
				s.Outgoing(roomID, []*event.PDU{pdu}, others)
			}
		}
	}
	switch got.Outcome {
	case Rejected, SoftFailed:
		return nil, matrix.Forbidden("The %s is not allowed: %s", membership, got.Reason)
	case AlreadyKnown:
		stored, err := s.graphEvents(ctx, pdu.Version, []string{pdu.EventID})
		if err != nil {
			return nil, err
		}
		if g := stored[pdu.EventID]; g != nil {
			if g.kind != store.KindTimeline {
				return nil, matrix.Forbidden("The %s was not accepted", membership)
			}
			return g.pdu, nil
		}
	}
	return pdu, nil
}

// StateBefore returns the room's state before an event this server has with
// its state (a timeline or soft-failed event), as event IDs: what
// /state_ids and send_join answer.
func (s *Service) StateBefore(ctx context.Context, roomID, eventID string) (StateMap, error) {
	rv, err := s.RoomVersion(ctx, roomID)
	if err != nil {
		return nil, err
	}
	found, err := s.graphEvents(ctx, rv, []string{eventID})
	if err != nil {
		return nil, err
	}
	g := found[eventID]
	if g == nil || g.pdu.RoomID != roomID || g.group == 0 {
		return nil, matrix.NotFound("Event not found")
	}
	after, err := s.stateOfGroup(ctx, g.group)
	if err != nil {
		return nil, err
	}
	if g.pdu.StateKey == nil {
		return after, nil
	}
	before := make(StateMap, len(after))
	for k, v := range after {
		before[k] = v
	}
	k := authrules.StateKey{Type: g.pdu.Type, StateKey: *g.pdu.StateKey}
	if g.replaces != "" {
		before[k] = g.replaces
	} else {
		delete(before, k)
	}
	return before, nil
}

// AuthChain returns the events of the auth chains of ids (their auth
// events, recursively), as stored: every event this server has, of any kind
// but rejected. One of ids is in the answer only when it is in another's
// chain: the create event of a room's state always is, and send_join's and
// /state's auth_chain must hold it (Server-Server API, send_join: "the auth
// chain for the entire current room state"; Dendrite refuses a join answer
// whose auth_chain has no m.room.create).
func (s *Service) AuthChain(ctx context.Context, rv *event.RoomVersion, ids []string) ([]*event.PDU, error) {
	// inChain: reached through an auth_events list (answered, walked once).
	inChain := make(map[string]bool, len(ids))
	var out []*event.PDU
	frontier := slices.Clone(ids)
	slices.Sort(frontier)
	frontier = slices.Compact(frontier)
	var next []string
	first := true
	for len(frontier) > 0 {
		found, err := s.graphEvents(ctx, rv, frontier)
		if err != nil {
			return nil, err
		}
		next = next[:0]
		for _, id := range frontier {
			g := found[id]
			if g == nil || g.kind == store.KindRejected {
				continue
			}
			if !first {
				out = append(out, g.pdu)
			}
			for _, a := range g.pdu.AuthEvents {
				if !inChain[a] {
					inChain[a] = true
					next = append(next, a)
				}
			}
		}
		if len(inChain) > maxAuthChain {
			return nil, fmt.Errorf("room: auth chain of more than %d events", maxAuthChain)
		}
		first = false
		frontier = append(frontier[:0], next...)
	}
	return out, nil
}

// Events returns stored events of a room by ID, of every kind but rejected
// and purged (for /event, /event_auth and the like); unknown ones are left
// out. Purged events are served to nobody, as Synapse, which deletes them:
// the walks of /backfill and /get_missing_events stop at them.
func (s *Service) Events(ctx context.Context, roomID string, ids []string) ([]*event.PDU, error) {
	rv, err := s.RoomVersion(ctx, roomID)
	if err != nil {
		return nil, err
	}
	found, err := s.graphEvents(ctx, rv, ids)
	if err != nil {
		return nil, err
	}
	out := make([]*event.PDU, 0, len(found))
	for _, id := range ids {
		if g := found[id]; g != nil && g.kind != store.KindRejected && g.kind != store.KindPurged && g.pdu.RoomID == roomID {
			out = append(out, g.pdu)
		}
	}
	return out, nil
}

// ImportJoin persists a room this server joined through another server:
// the join event, the state before it and the auth chain from the send_join
// answer, parsed for rv with their signatures and hashes checked by the
// caller. Every state and auth chain event is checked against its own auth
// events (in auth order; one that cannot be checked, or fails, is left out,
// as Synapse does with unverifiable events), the join against the state,
// and the room then starts here with the join as its one forward
// extremity.
func (s *Service) ImportJoin(ctx context.Context, rv *event.RoomVersion, join *event.PDU, state, authChain []*event.PDU) error {
	roomID := join.RoomID
	all := make(map[string]*event.PDU, len(state)+len(authChain))
	for _, list := range [][]*event.PDU{authChain, state} {
		for _, ev := range list {
			if event.RoomIDForCreate(ev) != roomID { // a v12 create carries no room_id
				return matrix.Forbidden("The join answer holds an event of another room")
			}
			all[ev.EventID] = ev
		}
	}
	if len(all) > maxAuthChain {
		return matrix.Forbidden("The join answer is too large")
	}
	valid := checkAuthOrder(rv, all)
	st := StateMap{}
	var create *event.PDU
	for _, ev := range state {
		if !valid[ev.EventID] || ev.StateKey == nil {
			continue
		}
		k := authrules.StateKey{Type: ev.Type, StateKey: *ev.StateKey}
		if _, dup := st[k]; dup {
			return matrix.Forbidden("The join answer's state holds %s %q twice", ev.Type, *ev.StateKey)
		}
		st[k] = ev.EventID
		if ev.Type == "m.room.create" {
			create = ev
		}
	}
	if create == nil {
		return matrix.Forbidden("The join answer's state has no valid m.room.create event")
	}
	getter := authrules.StateMap{}
	for k, id := range st {
		getter[k] = all[id]
	}
	if err := authrules.CheckWith(join, getter, receivedVerifier{}); err != nil {
		return matrix.Forbidden("The join is not allowed by the room's state: %s", err.Error())
	}

	var outliers []store.NewEvent
	for id, ev := range all {
		if valid[id] {
			outliers = append(outliers, receivedRow(&roomState{roomID: roomID}, ev, nil))
		}
	}
	slices.SortFunc(outliers, func(a, b store.NewEvent) int { return int(a.Depth - b.Depth) })
	var creator string
	if rv.CreatorIsSender {
		creator = create.Sender
	} else {
		var c struct {
			Creator string `json:"creator"`
		}
		json.Unmarshal(create.Content, &c)
		creator = c.Creator
	}
	err := s.retry(ctx, roomID, func() error {
		e := s.entry(roomID)
		e.mu.Lock()
		defer s.unlock(e)
		e.state = nil // whatever was known of the room is read again after
		if _, err := s.store.CreateRoom(ctx, &store.Room{RoomID: roomID, Version: rv.ID, Creator: creator, CreatedTS: create.OriginServerTS}, nil); err != nil && !errors.Is(err, store.ErrConflict) {
			return err
		}
		if err := s.store.PersistOutliers(ctx, outliers); err != nil {
			return err
		}
		old := map[authrules.StateKey]string{}
		if snap, err := s.store.LoadRoomSnapshot(ctx, roomID); err == nil {
			for _, se := range snap.State {
				old[authrules.StateKey{Type: se.Type, StateKey: *se.StateKey}] = se.EventID
			}
		}
		stateEntries := entriesOf(st, all)
		after := make(StateMap, len(st)+1)
		for k, v := range st {
			after[k] = v
		}
		after[authrules.StateKey{Type: "m.room.member", StateKey: *join.StateKey}] = join.EventID
		all[join.EventID] = join
		changes := entriesOf(diffStateMap(old, after), all)
		row := receivedRow(&roomState{roomID: roomID}, join, st)
		members := []string{}
		for _, c := range changes {
			if c.Type == "m.room.member" {
				members = append(members, c.StateKey)
			}
		}
		rows := []store.NewEvent{row}
		wctx, done := s.beginWith(ctx, roomID, rows, members)
		pos, group, err := s.store.PersistGraphEvent(wctx, &store.GraphWrite{Event: row, NewStateBefore: true, StateBeforeChanges: stateEntries,
			Extremities: []string{join.EventID}, CurrentResolved: true, CurrentChanges: changes})
		if err != nil {
			done(nil)
			return err
		}
		done([]int64{pos})
		s.groupState(group, after)
		s.parsed.put(join)
		s.parsed.setVersion(roomID, rv)
		if s.Notify != nil {
			// Users: everyone joined now plus the changed members (a rejoin
			// changes only the joiner, yet the room's other servers' users
			// are what the hooks look at).
			users := slices.Clone(members)
			for k, id := range after {
				if k.Type == "m.room.member" && !slices.Contains(users, k.StateKey) {
					if ev := all[id]; ev != nil && membershipOf(ev) == "join" {
						users = append(users, k.StateKey)
					}
				}
			}
			s.Notify(Notice{RoomID: roomID, Pos: pos, Users: users, Members: members})
		}
		s.upgradedRoomJoinsOf(create, roomID, []string{*join.StateKey})
		return nil
	})
	return err
}

// checkAuthOrder checks each event against its own auth events, taking
// events after their auth events; it returns those that passed. An event
// whose auth events are not all among the passed ones fails too.
func checkAuthOrder(rv *event.RoomVersion, all map[string]*event.PDU) map[string]bool {
	return checkAuthOrderWith(rv, all, nil)
}

// checkAuthOrderWith is checkAuthOrder where the events of all may also
// cite stored events (trusted: accepted or outliers here, not checked
// again).
func checkAuthOrderWith(rv *event.RoomVersion, all, trusted map[string]*event.PDU) map[string]bool {
	valid := make(map[string]bool, len(all))
	pending := make([]*event.PDU, 0, len(all))
	for _, ev := range all {
		pending = append(pending, ev)
	}
	// Depth orders auth events before the events citing them in any honest
	// chain; a few passes settle the rest (bounded: each pass must make
	// progress).
	slices.SortFunc(pending, func(a, b *event.PDU) int {
		if a.Depth != b.Depth {
			return int(a.Depth - b.Depth)
		}
		return compareStrings(a.EventID, b.EventID)
	})
	var create *event.PDU
	for _, ev := range trusted {
		if ev.Type == "m.room.create" && ev.StateKey != nil && *ev.StateKey == "" {
			create = ev
		}
	}
	for _, ev := range pending {
		if ev.Type == "m.room.create" && ev.StateKey != nil && *ev.StateKey == "" {
			if authrules.Check(ev, authrules.StateMap{}) == nil {
				create = ev
				valid[ev.EventID] = true
			}
		}
	}
	for progress := true; progress; {
		progress = false
		rest := pending[:0]
		for _, ev := range pending {
			if valid[ev.EventID] {
				continue
			}
			ready, known := true, true
			auth := make([]*event.PDU, 0, len(ev.AuthEvents))
			for _, a := range ev.AuthEvents {
				switch {
				case valid[a]:
					auth = append(auth, all[a])
				case trusted[a] != nil:
					auth = append(auth, trusted[a])
				case all[a] == nil:
					known = false
				default:
					ready = false
				}
			}
			if !known {
				continue // cannot be checked: left out
			}
			if !ready {
				rest = append(rest, ev)
				continue
			}
			if authrules.CheckAgainstAuthEvents(ev, auth, create, receivedVerifier{}) == nil {
				valid[ev.EventID] = true
				progress = true
			}
		}
		pending = rest
	}
	return valid
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func diffStateMap(from, to StateMap) StateMap {
	out := StateMap{}
	for k, v := range to {
		if from[k] != v {
			out[k] = v
		}
	}
	for k := range from {
		if _, ok := to[k]; !ok {
			out[k] = ""
		}
	}
	return out
}

// entriesOf turns a state (or changes: "" removes) into store entries, with
// memberships read from the events.
func entriesOf(st StateMap, events map[string]*event.PDU) []store.StateEntry {
	out := make([]store.StateEntry, 0, len(st))
	for k, id := range st {
		e := store.StateEntry{Type: k.Type, StateKey: k.StateKey, EventID: id}
		if k.Type == "m.room.member" && id != "" {
			if ev := events[id]; ev != nil {
				e.Membership, _ = authrules.Membership(ev)
			}
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b store.StateEntry) int {
		if c := compareStrings(a.Type, b.Type); c != 0 {
			return c
		}
		return compareStrings(a.StateKey, b.StateKey)
	})
	return out
}

// strippedTypes are the state events shown with an invite or a knock
// (Client-Server API, "Stripped state").
var strippedTypes = []string{"m.room.create", "m.room.join_rules", "m.room.name", "m.room.avatar", "m.room.canonical_alias", "m.room.encryption", "m.room.topic"}

// StrippedState returns the room's stripped state for another server (an
// invite's invite_room_state, a knock's knock_room_state): its current
// create event, name, topic, join rules and the like, as full PDUs — the
// Server-Server API requires them since v1.16 (MSC4311), so the receiving
// server can check the create event; older servers read type, state_key,
// content and sender from them as before.
func (s *Service) StrippedState(ctx context.Context, roomID string) ([]json.RawMessage, error) {
	e, rs, err := s.lock(ctx, roomID)
	if err != nil {
		return nil, err
	}
	defer s.unlock(e)
	return s.strippedOf(rs), nil
}

func (s *Service) strippedOf(rs *roomState) []json.RawMessage {
	out := []json.RawMessage{}
	for _, t := range strippedTypes {
		if p := rs.StateEvent(t, ""); p != nil && len(p.Raw) > 0 {
			out = append(out, p.Raw)
		}
	}
	return out
}

// AnyEvent returns a stored event of any room by ID, of every kind but
// rejected and purged (the Server-Server API's /event; the caller checks that the
// requesting server may see it).
func (s *Service) AnyEvent(ctx context.Context, eventID string) (*event.PDU, error) {
	pdus, err := s.store.GetPDUs(ctx, []string{eventID})
	if err != nil {
		return nil, err
	}
	if len(pdus) == 0 || pdus[0].Kind == store.KindRejected || pdus[0].Kind == store.KindPurged {
		return nil, matrix.NotFound("Event not found")
	}
	rv, err := s.RoomVersion(ctx, pdus[0].RoomID)
	if err == errUnknownRoom {
		// An invite to (or knock on) a room this server is not in.
		if id, verr := s.store.RemoteRoomVersion(ctx, pdus[0].RoomID); verr == nil {
			rv, _ = event.GetRoomVersion(id)
		}
		if rv != nil {
			err = nil
		}
	}
	if err != nil {
		return nil, err
	}
	found, err := s.graphEvents(ctx, rv, []string{eventID})
	if err != nil {
		return nil, err
	}
	if g := found[eventID]; g != nil {
		return g.pdu, nil
	}
	return nil, matrix.NotFound("Event not found")
}

// IsResident reports whether a user of this server is joined to the room
// (false for a room this server does not know).
func (s *Service) IsResident(ctx context.Context, roomID string) bool {
	e, rs, err := s.lock(ctx, roomID)
	if err != nil {
		return false
	}
	defer s.unlock(e)
	return s.resident(rs)
}

// MemberProfile is what a member event of userID carries of their profile:
// displayname and avatar_url when set.
func (s *Service) MemberProfile(ctx context.Context, userID string) map[string]json.RawMessage {
	c := map[string]any{}
	s.addProfile(ctx, userID, c)
	out := make(map[string]json.RawMessage, len(c))
	for k, v := range c {
		if j, err := json.Marshal(v); err == nil {
			out[k] = j
		}
	}
	return out
}
