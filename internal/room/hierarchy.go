package room

import (
	"context"
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"time"

	"conclave/internal/authrules"
	"conclave/internal/lru"
	"conclave/internal/matrix"
)

// Spaces and room summaries (Client-Server API, "Spaces": GET
// /_matrix/client/v1/rooms/{roomId}/hierarchy; "Room summaries": GET
// /_matrix/client/v1/room_summary/{roomIdOrAlias}). Rooms this server is
// in are read here; the others are asked of the servers their
// m.space.child names (via), through RemoteHierarchy (GET
// /_matrix/federation/v1/hierarchy/{roomId}, which HierarchyFor answers for
// other servers).

// RoomSummary is what a client may learn about a room before joining it.
type RoomSummary struct {
	PublicRoom
	RoomVersion string `json:"room_version,omitempty"`
	Encryption  string `json:"encryption,omitempty"`
	// AllowedRoomIDs: for a restricted (or knock_restricted) room, the
	// rooms whose members may join it.
	AllowedRoomIDs []string `json:"allowed_room_ids,omitempty"`
}

// HierarchyRoom is one room of a space hierarchy: its summary and, for a
// space, its m.space.child events as stripped state with origin_server_ts.
type HierarchyRoom struct {
	RoomSummary
	ChildrenState []json.RawMessage `json:"children_state"`
}

// HierarchyQuery is a /hierarchy request.
type HierarchyQuery struct {
	Limit         int // > 0
	MaxDepth      int // -1: no limit
	SuggestedOnly bool
	From          string // "" or a NextBatch from a request with the same MaxDepth and SuggestedOnly
}

// HierarchyPage is a page of a hierarchy.
type HierarchyPage struct {
	Rooms     []HierarchyRoom
	NextBatch string // "" when nothing follows
}

// spaceChild is a valid m.space.child event of a space.
type spaceChild struct {
	roomID    string
	via       []string
	order     string
	ts        int64
	suggested bool
	stripped  json.RawMessage
}

// spaceRoom is what the traversal reads of one room, under its lock.
type spaceRoom struct {
	summary    RoomSummary
	membership string // the requester's
	children   []spaceChild
	// here: a user of this server is joined, so the state read is current
	// (a room all our users left keeps the state of when they left).
	here bool
}

// readSpaceRoom reads roomID's summary, the requester's membership and, for
// a space, its children in the spec's order ("Ordering of children within a
// space": by order when valid, then the child event's origin_server_ts, then
// room ID). errUnknownRoom when this server does not know the room.
func (s *Service) readSpaceRoom(ctx context.Context, roomID, userID string) (*spaceRoom, error) {
	pr, err := s.publicRoomAny(ctx, roomID)
	if err != nil {
		return nil, err
	}
	e, rs, err := s.lock(ctx, roomID)
	if err != nil {
		return nil, err
	}
	defer s.unlock(e)
	out := &spaceRoom{summary: RoomSummary{PublicRoom: *pr, RoomVersion: rs.version.ID}, membership: rs.membership(userID)}
	if ev := rs.StateEvent("m.room.encryption", ""); ev != nil {
		var c struct {
			Algorithm string `json:"algorithm"`
		}
		json.Unmarshal(ev.Content, &c)
		out.summary.Encryption = c.Algorithm
	}
	if jr := pr.JoinRule; jr == authrules.JoinRuleRestricted || jr == authrules.JoinRuleKnockRestricted {
		for id := range allowedRooms(rs) {
			out.summary.AllowedRoomIDs = append(out.summary.AllowedRoomIDs, id)
		}
		sort.Strings(out.summary.AllowedRoomIDs)
	}
	for u := range rs.joined {
		if matrix.ServerOf(u) == s.serverName {
			out.here = true
			break
		}
	}
	if pr.RoomType != "m.space" {
		return out, nil
	}
	for k, ev := range rs.state {
		if k.typ != "m.space.child" {
			continue
		}
		stripped, _ := json.Marshal(map[string]any{"type": ev.Type, "state_key": k.key, "content": ev.Content, "sender": ev.Sender, "origin_server_ts": ev.OriginServerTS})
		if c, ok := parseSpaceChild(k.key, ev.Content, ev.OriginServerTS, stripped); ok {
			out.children = append(out.children, c)
		}
	}
	sortChildren(out.children)
	return out, nil
}

// parseSpaceChild reads one m.space.child event (state key, content); ok
// is false for what is no child: a state key that is no room ID, or no via
// (an emptied or redacted link).
func parseSpaceChild(stateKey string, content json.RawMessage, ts int64, stripped json.RawMessage) (spaceChild, bool) {
	if !matrix.ValidRoomID(stateKey) {
		return spaceChild{}, false
	}
	var c struct {
		Via       []string `json:"via"`
		Order     any      `json:"order"`
		Suggested any      `json:"suggested"`
	}
	if json.Unmarshal(content, &c) != nil || len(c.Via) == 0 {
		return spaceChild{}, false
	}
	var via []string
	for _, v := range c.Via {
		if matrix.ValidServerName(v) && len(via) < maxVia {
			via = append(via, v)
		}
	}
	order, _ := c.Order.(string)
	if len(order) > 50 || strings.ContainsFunc(order, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
		order = ""
	}
	suggested, _ := c.Suggested.(bool)
	return spaceChild{roomID: stateKey, via: via, order: order, ts: ts, suggested: suggested, stripped: stripped}, true
}

// maxVia bounds the servers asked about one child.
const maxVia = 10

// sortChildren puts children in the spec's order ("Ordering of children
// within a space": by order when valid, then the child event's
// origin_server_ts, then room ID).
func sortChildren(children []spaceChild) {
	sort.Slice(children, func(i, j int) bool {
		a, b := children[i], children[j]
		if (a.order != "") != (b.order != "") {
			return a.order != ""
		}
		if a.order != b.order {
			return a.order < b.order
		}
		if a.ts != b.ts {
			return a.ts < b.ts
		}
		return a.roomID < b.roomID
	})
}

// publicRoomAny is publicRoom's summary for any room, upgraded ones too.
func (s *Service) publicRoomAny(ctx context.Context, roomID string) (*PublicRoom, error) {
	pr, err := s.publicRoom(ctx, roomID)
	if err != nil || pr != nil {
		return pr, err
	}
	// Tombstoned: publicRoom leaves it out of the directory, but its
	// summary is still what a client asks for.
	e, rs, err := s.lock(ctx, roomID)
	if err != nil {
		return nil, err
	}
	jr := JoinRuleOf(rs)
	n := len(rs.joined)
	s.unlock(e)
	return &PublicRoom{RoomID: roomID, NumJoinedMembers: n, JoinRule: jr}, nil
}

// accessible reports whether the requester may see a room's summary: they
// are joined or invited, the room is world readable, anyone may join or
// knock, or it is restricted to rooms they are joined to (Client-Server
// API, "Room summaries" and GET /hierarchy: rooms the user could join or
// peek into).
func (r *spaceRoom) accessible(joinedTo map[string]bool) bool {
	if r.membership == authrules.MembershipJoin || r.membership == authrules.MembershipInvite {
		return true
	}
	switch r.summary.JoinRule {
	case authrules.JoinRulePublic, "knock", authrules.JoinRuleKnockRestricted:
		return true
	}
	if r.summary.WorldReadable {
		return true
	}
	for _, id := range r.summary.AllowedRoomIDs {
		if joinedTo[id] {
			return true
		}
	}
	return false
}

// joinedRooms is the set of rooms the user is joined to now, and the
// user's membership in every room they have one in (invites to rooms of
// other servers too: what tells us of rooms we are not in).
func (s *Service) joinedRooms(ctx context.Context, userID string) (map[string]bool, map[string]string, error) {
	out, all := map[string]bool{}, map[string]string{}
	if userID == "" {
		return out, all, nil
	}
	ms, err := s.store.UserMemberships(ctx, userID)
	if err != nil {
		return nil, nil, err
	}
	for _, m := range ms {
		all[m.RoomID] = m.Membership
		if m.Membership == authrules.MembershipJoin {
			out[m.RoomID] = true
		}
	}
	return out, all, nil
}

// RoomSummary returns a room's summary and the requester's membership in it
// ("" when none or anonymous). A room this server is not in is asked of the
// servers in via (MSC3266: the client names them, or they come with a
// remote alias), as Synapse does, through the federation hierarchy
// endpoint. A room nobody could tell us about, or one the requester may
// not see, is 404 M_NOT_FOUND alike.
func (s *Service) RoomSummary(ctx context.Context, roomID, userID string, via []string) (*RoomSummary, string, error) {
	joinedTo, memberships, err := s.joinedRooms(ctx, userID)
	if err != nil {
		return nil, "", err
	}
	w := &hierarchyWalk{s: s, userID: userID, joinedTo: joinedTo, memberships: memberships, known: map[string]HierarchyRoom{}, inaccessible: map[string]bool{}}
	var clean []string
	for _, v := range via {
		if matrix.ValidServerName(v) && len(clean) < maxVia {
			clean = append(clean, v)
		}
	}
	r, ok, err := w.node(ctx, roomID, clean, false)
	if err != nil {
		return nil, "", err
	}
	if !ok || !r.accessible(joinedTo) {
		return nil, "", matrix.NotFound("Room %s not found", roomID)
	}
	return &r.summary, r.membership, nil
}

// RemoteSpace is what another server says of a room
// (GET /_matrix/federation/v1/hierarchy/{roomId}): the room with its
// m.space.child events, the summaries of its children that server knows and
// the asking server may see, and the children nobody may see.
type RemoteSpace struct {
	Room         HierarchyRoom   `json:"room"`
	Children     []HierarchyRoom `json:"children"`
	Inaccessible []string        `json:"inaccessible_children"`
}

// RemoteHierarchy asks the servers in via, in turn, about roomID
// (federation.Service.Hierarchy). An error: none could answer.
type RemoteHierarchy func(ctx context.Context, roomID string, via []string, suggestedOnly bool) (*RemoteSpace, error)

// Limits of one hierarchy request.
const (
	// maxHierarchyRooms bounds the rooms a request looks at.
	maxHierarchyRooms = 2000
	// maxRemoteAsks bounds the other servers asked in one request.
	maxRemoteAsks = 20
	// maxSpaceChildren bounds the children served of one space to other
	// servers (Synapse: MAX_ROOMS_PER_SPACE 50).
	maxSpaceChildren = 50
	// remoteSpaceTTL is how long an answer of another server is reused
	// (the spec: "Responses to this endpoint should be cached"); pages of
	// one hierarchy then see the same tree.
	remoteSpaceTTL = time.Minute
	// remoteRefusalTTL is shorter: a failure may end any moment (a server
	// comes back). A refusal (the server answered that this one may not
	// see the room) is not kept at all: it ends as soon as a membership
	// changes there (Complement's TestRestrictedRoomsSpacesSummaryFederation
	// asks again right after one).
	remoteRefusalTTL = 5 * time.Second
	maxCachedSpaces  = 1000
)

type cachedSpace struct {
	at    time.Time
	space *RemoteSpace
	err   error
}

// hierarchyWalk is one request's traversal state.
type hierarchyWalk struct {
	s        *Service
	userID   string
	joinedTo map[string]bool
	// memberships: the user's in every room they have one in.
	memberships map[string]string
	q           HierarchyQuery
	// known: summaries of rooms other servers gave as children (with
	// their children_state when the server gave it); inaccessible: rooms
	// a server said nobody may see.
	known        map[string]HierarchyRoom
	inaccessible map[string]bool
	asks         int
}

// remoteSpace asks about roomID through s.RemoteHierarchy, reusing a recent
// answer.
func (w *hierarchyWalk) remoteSpace(ctx context.Context, roomID string, via []string) (*RemoteSpace, error) {
	key := roomID + "|" + strconv.FormatBool(w.q.SuggestedOnly)
	cache := w.s.spaceCache()
	if c, ok := cache.Get(key); ok {
		ttl := remoteSpaceTTL
		if c.err != nil {
			ttl = remoteRefusalTTL
		}
		if w.s.now().Sub(c.at) < ttl {
			return c.space, c.err
		}
	}
	if w.asks >= maxRemoteAsks || len(via) == 0 {
		return nil, errUnknownRoom
	}
	w.asks++
	sp, err := w.s.RemoteHierarchy(ctx, roomID, via, w.q.SuggestedOnly)
	if err == nil && (sp == nil || sp.Room.RoomID != roomID) {
		sp, err = nil, errUnknownRoom
	}
	if ctx.Err() == nil && !isRefusal(err) {
		cache.Put(key, cachedSpace{at: w.s.now(), space: sp, err: err})
	}
	return sp, err
}

// isRefusal: the other server answered (a 4xx Matrix error), as opposed to
// failing to.
func isRefusal(err error) bool {
	if err == nil {
		return false
	}
	if err == errUnknownRoom {
		return true
	}
	me, ok := matrix.AsError(err)
	return ok && me.Status >= 400 && me.Status < 500
}

func (s *Service) spaceCache() *lru.Cache[string, cachedSpace] {
	s.spacesOnce.Do(func() { s.spaces = lru.New[string, cachedSpace](maxCachedSpaces) })
	return s.spaces
}

// node reads one room of the walk: here when this server is in it (or
// cannot ask anyone else), else from another server. ok is false when the
// room cannot be read at all.
func (w *hierarchyWalk) node(ctx context.Context, roomID string, via []string, descend bool) (*spaceRoom, bool, error) {
	local, err := w.s.readSpaceRoom(ctx, roomID, w.userID)
	if err != nil && err != errUnknownRoom {
		return nil, false, err
	}
	if local != nil && (local.here || w.s.RemoteHierarchy == nil) {
		return local, true, nil
	}
	if w.s.RemoteHierarchy == nil || w.inaccessible[roomID] {
		return local, local != nil, nil
	}
	var hr *HierarchyRoom
	if k, ok := w.known[roomID]; ok && (!descend || k.RoomType != "m.space" || k.ChildrenState != nil) {
		hr = &k
	} else if sp, err := w.remoteSpace(ctx, roomID, via); err == nil {
		hr = &sp.Room
		for _, c := range sp.Children {
			if matrix.ValidRoomID(c.RoomID) && len(w.known) < maxHierarchyRooms {
				if _, dup := w.known[c.RoomID]; !dup {
					w.known[c.RoomID] = c
				}
			}
		}
		for _, id := range sp.Inaccessible {
			if len(w.inaccessible) < maxHierarchyRooms {
				w.inaccessible[id] = true
			}
		}
	}
	if hr == nil {
		return local, local != nil, nil // what we knew, if anything
	}
	out := &spaceRoom{summary: hr.RoomSummary, membership: ""}
	out.summary.RoomID = roomID
	if m := w.memberships[roomID]; m != "" {
		out.membership = m
	} else if local != nil {
		out.membership = local.membership
	}
	for _, raw := range hr.ChildrenState {
		var ev struct {
			Type           string          `json:"type"`
			StateKey       string          `json:"state_key"`
			Content        json.RawMessage `json:"content"`
			OriginServerTS int64           `json:"origin_server_ts"`
		}
		if json.Unmarshal(raw, &ev) != nil || ev.Type != "m.space.child" {
			continue
		}
		if c, ok := parseSpaceChild(ev.StateKey, ev.Content, ev.OriginServerTS, raw); ok && len(out.children) < maxSpaceChildren {
			out.children = append(out.children, c)
		}
	}
	sortChildren(out.children)
	return out, true, nil
}

// Hierarchy walks the space tree below root depth first, children in
// order, as Synapse does: a room the requester may not see is left out
// with everything below it, only spaces are descended into, and a room is
// listed once. Rooms this server is not in are asked of the servers their
// m.space.child names. The root must be visible (403 otherwise). Pages are
// cut by the count of rooms already listed, so a page token is only that
// count with the parameters it was made for (other servers' answers are
// reused for a minute, so the pages of one walk see one tree).
func (s *Service) Hierarchy(ctx context.Context, userID, root string, q HierarchyQuery) (*HierarchyPage, error) {
	skip := 0
	if q.From != "" {
		var ok bool
		if skip, ok = parseHierarchyToken(q.From, q); !ok {
			return nil, matrix.InvalidParam("Invalid from token, or max_depth or suggested_only changed since it was made")
		}
	}
	joinedTo, memberships, err := s.joinedRooms(ctx, userID)
	if err != nil {
		return nil, err
	}
	w := &hierarchyWalk{s: s, userID: userID, joinedTo: joinedTo, memberships: memberships, q: q, known: map[string]HierarchyRoom{}, inaccessible: map[string]bool{}}
	type entry struct {
		roomID string
		via    []string
		depth  int
	}
	stack := []entry{{root, nil, 0}}
	seen := map[string]bool{}
	page := &HierarchyPage{Rooms: []HierarchyRoom{}}
	listed := 0
	for len(stack) > 0 && len(seen) < maxHierarchyRooms {
		e := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[e.roomID] {
			continue
		}
		seen[e.roomID] = true
		descend := q.MaxDepth < 0 || e.depth < q.MaxDepth
		r, ok, err := w.node(ctx, e.roomID, e.via, descend)
		if err != nil {
			return nil, err
		}
		if !ok {
			if e.depth == 0 {
				return nil, matrix.NotFound("Room %s not found", root)
			}
			continue
		}
		if !r.accessible(joinedTo) {
			if e.depth == 0 {
				return nil, matrix.Forbidden("You may not see the hierarchy of room %s", root)
			}
			continue
		}
		var children []spaceChild
		for _, c := range r.children {
			if !q.SuggestedOnly || c.suggested {
				children = append(children, c)
			}
		}
		if listed >= skip {
			if len(page.Rooms) == q.Limit {
				page.NextBatch = hierarchyToken(listed, q)
				break
			}
			hr := HierarchyRoom{RoomSummary: r.summary, ChildrenState: []json.RawMessage{}}
			for _, c := range children {
				hr.ChildrenState = append(hr.ChildrenState, c.stripped)
			}
			page.Rooms = append(page.Rooms, hr)
		}
		listed++
		if !descend {
			continue
		}
		for i := len(children) - 1; i >= 0; i-- {
			stack = append(stack, entry{children[i].roomID, children[i].via, e.depth + 1})
		}
	}
	return page, nil
}

// HierarchyFor answers another server's GET /_matrix/federation/v1/hierarchy/{roomId}
// (Server-Server API, "Spaces"): the room, if this server is in it and
// origin could peek or join it, with its children this server is in:
// those origin could peek or join summarised, the others listed as
// inaccessible; children this server is not in are left out (it cannot
// tell). 404 M_NOT_FOUND otherwise.
func (s *Service) HierarchyFor(ctx context.Context, origin, roomID string, suggestedOnly bool) (*RemoteSpace, error) {
	r, err := s.readSpaceRoom(ctx, roomID, "")
	if err == errUnknownRoom || (err == nil && !r.here) {
		return nil, matrix.NotFound("Room %s not found", roomID)
	}
	if err != nil {
		return nil, err
	}
	ok, err := s.serverMayPeekOrJoin(ctx, r, origin)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, matrix.NotFound("Room %s not found", roomID)
	}
	out := &RemoteSpace{Room: HierarchyRoom{RoomSummary: r.summary, ChildrenState: []json.RawMessage{}}, Children: []HierarchyRoom{}, Inaccessible: []string{}}
	for _, c := range r.children {
		if suggestedOnly && !c.suggested {
			continue
		}
		if len(out.Room.ChildrenState) == maxSpaceChildren {
			break
		}
		out.Room.ChildrenState = append(out.Room.ChildrenState, c.stripped)
		cr, err := s.readSpaceRoom(ctx, c.roomID, "")
		if err == errUnknownRoom || (err == nil && !cr.here) {
			continue
		}
		if err != nil {
			return nil, err
		}
		ok, err := s.serverMayPeekOrJoin(ctx, cr, origin)
		if err != nil {
			return nil, err
		}
		if !ok {
			out.Inaccessible = append(out.Inaccessible, c.roomID)
			continue
		}
		// A child space's own children come along, so the asking server
		// need not ask again to descend into it.
		hr := HierarchyRoom{RoomSummary: cr.summary, ChildrenState: []json.RawMessage{}}
		for _, cc := range cr.children {
			if (!suggestedOnly || cc.suggested) && len(hr.ChildrenState) < maxSpaceChildren {
				hr.ChildrenState = append(hr.ChildrenState, cc.stripped)
			}
		}
		out.Children = append(out.Children, hr)
	}
	return out, nil
}

// serverMayPeekOrJoin is accessible for a server (Synapse's
// _is_local_room_accessible with an origin): anyone may join, knock or
// peek; or one of origin's users is joined or invited; or the room is
// restricted to rooms where one of origin's users is joined.
func (s *Service) serverMayPeekOrJoin(ctx context.Context, r *spaceRoom, origin string) (bool, error) {
	switch r.summary.JoinRule {
	case authrules.JoinRulePublic, "knock", authrules.JoinRuleKnockRestricted:
		return true, nil
	}
	if r.summary.WorldReadable {
		return true, nil
	}
	in, err := s.serverMembers(ctx, r.summary.RoomID, origin, true)
	if err != nil || in {
		return in, err
	}
	for _, id := range r.summary.AllowedRoomIDs {
		in, err := s.serverMembers(ctx, id, origin, false)
		if err == errUnknownRoom {
			continue
		}
		if err != nil || in {
			return in, err
		}
	}
	return false, nil
}

// serverMembers reports whether a user of server is joined to roomID (or,
// with invited, invited to it).
func (s *Service) serverMembers(ctx context.Context, roomID, server string, invited bool) (bool, error) {
	e, rs, err := s.lock(ctx, roomID)
	if err != nil {
		return false, err
	}
	defer s.unlock(e)
	for u := range rs.joined {
		if matrix.ServerOf(u) == server {
			return true, nil
		}
	}
	if !invited {
		return false, nil
	}
	for k := range rs.state {
		if k.typ == "m.room.member" && matrix.ServerOf(k.key) == server && rs.membership(k.key) == authrules.MembershipInvite {
			return true, nil
		}
	}
	return false, nil
}

// hierarchyToken is "<rooms listed before the page>_<max_depth>_<0|1>".
func hierarchyToken(listed int, q HierarchyQuery) string {
	sug := "0"
	if q.SuggestedOnly {
		sug = "1"
	}
	return strconv.Itoa(listed) + "_" + strconv.Itoa(q.MaxDepth) + "_" + sug
}

func parseHierarchyToken(tok string, q HierarchyQuery) (int, bool) {
	parts := strings.Split(tok, "_")
	if len(parts) != 3 {
		return 0, false
	}
	n, err := strconv.Atoi(parts[0])
	if err != nil || n < 0 || hierarchyToken(n, q) != tok {
		return 0, false
	}
	return n, true
}
