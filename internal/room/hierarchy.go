package room

import (
	"context"
	"encoding/json"
	"sort"
	"strconv"
	"strings"

	"conclave/internal/authrules"
	"conclave/internal/matrix"
)

// Spaces and room summaries (Client-Server API, "Spaces": GET
// /_matrix/client/v1/rooms/{roomId}/hierarchy; "Room summaries": GET
// /_matrix/client/v1/room_summary/{roomIdOrAlias}), over the rooms this
// server knows. Rooms only other servers know are left out until the
// federation hierarchy API is used.

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
	if pr.RoomType != "m.space" {
		return out, nil
	}
	for k, ev := range rs.state {
		if k.typ != "m.space.child" || !matrix.ValidRoomID(k.key) {
			continue
		}
		var c struct {
			Via       []string `json:"via"`
			Order     any      `json:"order"`
			Suggested bool     `json:"suggested"`
		}
		// A child without a via (an emptied or redacted link) is no child.
		if json.Unmarshal(ev.Content, &c) != nil || len(c.Via) == 0 {
			continue
		}
		order, _ := c.Order.(string)
		if len(order) > 50 || strings.ContainsFunc(order, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
			order = ""
		}
		stripped, _ := json.Marshal(map[string]any{"type": ev.Type, "state_key": k.key, "content": ev.Content, "sender": ev.Sender, "origin_server_ts": ev.OriginServerTS})
		out.children = append(out.children, spaceChild{roomID: k.key, order: order, ts: ev.OriginServerTS, suggested: c.Suggested, stripped: stripped})
	}
	sort.Slice(out.children, func(i, j int) bool {
		a, b := out.children[i], out.children[j]
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
	return out, nil
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

// joinedRooms is the set of rooms the user is joined to now.
func (s *Service) joinedRooms(ctx context.Context, userID string) (map[string]bool, error) {
	out := map[string]bool{}
	if userID == "" {
		return out, nil
	}
	ms, err := s.store.UserMemberships(ctx, userID)
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		if m.Membership == authrules.MembershipJoin {
			out[m.RoomID] = true
		}
	}
	return out, nil
}

// RoomSummary returns a room's summary and the requester's membership in it
// ("" when none or anonymous). A room this server does not know, or one the
// requester may not see, is 404 M_NOT_FOUND alike.
func (s *Service) RoomSummary(ctx context.Context, roomID, userID string) (*RoomSummary, string, error) {
	r, err := s.readSpaceRoom(ctx, roomID, userID)
	if err == errUnknownRoom {
		return nil, "", matrix.NotFound("Room %s not found", roomID)
	}
	if err != nil {
		return nil, "", err
	}
	joinedTo, err := s.joinedRooms(ctx, userID)
	if err != nil {
		return nil, "", err
	}
	if !r.accessible(joinedTo) {
		return nil, "", matrix.NotFound("Room %s not found", roomID)
	}
	return &r.summary, r.membership, nil
}

// Hierarchy walks the space tree below root depth first, children in
// order, as Synapse does: a room the requester may not see is left out
// with everything below it, only spaces are descended into, and a room is
// listed once. The root must be visible (403 otherwise). Pages are cut by
// the count of rooms already listed, so a page token is only that count
// with the parameters it was made for.
func (s *Service) Hierarchy(ctx context.Context, userID, root string, q HierarchyQuery) (*HierarchyPage, error) {
	skip := 0
	if q.From != "" {
		var ok bool
		if skip, ok = parseHierarchyToken(q.From, q); !ok {
			return nil, matrix.InvalidParam("Invalid from token, or max_depth or suggested_only changed since it was made")
		}
	}
	joinedTo, err := s.joinedRooms(ctx, userID)
	if err != nil {
		return nil, err
	}
	type entry struct {
		roomID string
		depth  int
	}
	stack := []entry{{root, 0}}
	seen := map[string]bool{}
	page := &HierarchyPage{Rooms: []HierarchyRoom{}}
	listed := 0
	for len(stack) > 0 {
		e := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[e.roomID] {
			continue
		}
		seen[e.roomID] = true
		r, err := s.readSpaceRoom(ctx, e.roomID, userID)
		if err == errUnknownRoom {
			if e.depth == 0 {
				return nil, matrix.NotFound("Room %s not found", root)
			}
			continue
		}
		if err != nil {
			return nil, err
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
		if q.MaxDepth >= 0 && e.depth >= q.MaxDepth {
			continue
		}
		for i := len(children) - 1; i >= 0; i-- {
			stack = append(stack, entry{children[i].roomID, e.depth + 1})
		}
	}
	return page, nil
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
