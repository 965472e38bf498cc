package room

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strings"
	"unicode"

	"conclave/internal/matrix"
	"conclave/internal/store"
)

// maxAliasLength is the longest alias accepted (Synapse's limit, the
// grammar's 255-byte bound on identifiers).
const maxAliasLength = 255

// checkLocalAlias validates an alias this server may create.
func (s *Service) checkLocalAlias(alias string) error {
	local, server, ok := matrix.SplitID('#', alias)
	if !ok || !matrix.ValidAlias(alias) || len(alias) > maxAliasLength {
		return matrix.InvalidParam("Invalid room alias %q", alias)
	}
	if strings.ContainsFunc(local, unicode.IsSpace) || strings.ContainsRune(local, ':') {
		return matrix.InvalidParam("Invalid characters in room alias")
	}
	if server != s.serverName {
		return matrix.InvalidParam("Room alias must be local")
	}
	return nil
}

// CreateAlias maps a local alias to a room (PUT /directory/room/{roomAlias}).
// Like Synapse, the user must be joined to the room unless a server admin;
// a taken alias is 409 M_UNKNOWN as the spec lists.
func (s *Service) CreateAlias(ctx context.Context, alias, roomID, userID string, isAdmin bool) error {
	if err := s.checkLocalAlias(alias); err != nil {
		return err
	}
	if !matrix.ValidRoomID(roomID) {
		return matrix.InvalidParam("Invalid room_id")
	}
	m, err := s.Membership(ctx, roomID, userID)
	if err != nil {
		return err
	}
	if m != "join" {
		if !isAdmin {
			return matrix.Forbidden("You must be in the room to create an alias for it")
		}
		if _, err := s.RoomVersion(ctx, roomID); err != nil {
			return err
		}
	}
	err = s.store.CreateAlias(ctx, alias, roomID, userID)
	if errors.Is(err, store.ErrConflict) {
		return matrix.Errorf(http.StatusConflict, matrix.ErrUnknown, "Room alias %s already exists", alias)
	}
	return err
}

// ResolveAlias returns the room an alias points to, with the servers to
// join through (only this server until federation lands).
func (s *Service) ResolveAlias(ctx context.Context, alias string) (string, []string, error) {
	if !matrix.ValidAlias(alias) {
		return "", nil, matrix.InvalidParam("Invalid room alias %q", alias)
	}
	roomID, _, err := s.store.GetAlias(ctx, alias)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil, matrix.NotFound("Room alias %s not found", alias)
	}
	if err != nil {
		return "", nil, err
	}
	return roomID, []string{s.serverName}, nil
}

// DeleteAlias removes an alias: allowed to its creator, a server admin, or
// a member with the power to send m.room.canonical_alias (Synapse's rule).
// If the alias was the room's canonical alias or among alt_aliases, the
// m.room.canonical_alias event is updated, as Synapse does; a refusal of
// that update does not undo the deletion.
func (s *Service) DeleteAlias(ctx context.Context, alias, userID, deviceID string, isAdmin bool) error {
	if !matrix.ValidAlias(alias) {
		return matrix.InvalidParam("Invalid room alias %q", alias)
	}
	roomID, creator, err := s.store.GetAlias(ctx, alias)
	if errors.Is(err, store.ErrNotFound) {
		return matrix.NotFound("Unknown room alias")
	}
	if err != nil {
		return err
	}
	if creator != userID {
		ok, err := s.CanChangeRoomList(ctx, roomID, userID, isAdmin)
		if err != nil && err != errUnknownRoom {
			return err
		}
		if !ok {
			return matrix.Forbidden("You don't have permission to delete the alias.")
		}
	}
	if err := s.store.DeleteAlias(ctx, alias); errors.Is(err, store.ErrNotFound) {
		return matrix.NotFound("Unknown room alias")
	} else if err != nil {
		return err
	}
	s.dropCanonicalAlias(ctx, roomID, alias, userID, deviceID)
	return nil
}

func (s *Service) dropCanonicalAlias(ctx context.Context, roomID, alias, userID, deviceID string) {
	ev, err := s.CurrentStateEvent(ctx, roomID, "m.room.canonical_alias", "")
	if err != nil || ev == nil {
		return
	}
	var c map[string]json.RawMessage
	if json.Unmarshal(ev.Content, &c) != nil {
		return
	}
	changed := false
	var main string
	if json.Unmarshal(c["alias"], &main) == nil && main == alias {
		delete(c, "alias")
		changed = true
	}
	var alt []string
	if json.Unmarshal(c["alt_aliases"], &alt) == nil {
		kept := alt[:0:0]
		for _, a := range alt {
			if a != alias {
				kept = append(kept, a)
			}
		}
		if len(kept) != len(alt) {
			changed = true
			if len(kept) == 0 {
				delete(c, "alt_aliases")
			} else {
				c["alt_aliases"], _ = json.Marshal(kept)
			}
		}
	}
	if !changed {
		return
	}
	raw, _ := json.Marshal(c)
	empty := ""
	s.Send(ctx, &SendRequest{RoomID: roomID, Sender: userID, DeviceID: deviceID, Type: "m.room.canonical_alias", StateKey: &empty, Content: raw})
}

// LocalAliases lists the local aliases of a room for a user who may read it:
// joined, or the room is world readable (GET /rooms/{roomId}/aliases).
func (s *Service) LocalAliases(ctx context.Context, roomID, userID string) ([]string, error) {
	if _, err := s.RoomVersion(ctx, roomID); err != nil {
		if err == errUnknownRoom {
			return nil, matrix.Forbidden("You are not a member of this room")
		}
		return nil, err
	}
	vis, err := s.Visibility(ctx, roomID, userID)
	if err != nil {
		return nil, err
	}
	if vis.Current() != "join" && !vis.WorldReadable() {
		return nil, matrix.Forbidden("You are not a member of this room")
	}
	aliases, err := s.store.AliasesForRoom(ctx, roomID)
	if aliases == nil {
		aliases = []string{}
	}
	return aliases, err
}

// DirectoryVisibility is "public" when the room is published in the room
// directory, "private" otherwise.
func (s *Service) DirectoryVisibility(ctx context.Context, roomID string) (string, error) {
	r, err := s.store.GetRoom(ctx, roomID)
	if errors.Is(err, store.ErrNotFound) {
		return "", matrix.NotFound("Unknown room")
	}
	if err != nil {
		return "", err
	}
	if r.Public {
		return "public", nil
	}
	return "private", nil
}

// SetDirectoryVisibility publishes or unpublishes a room.
func (s *Service) SetDirectoryVisibility(ctx context.Context, roomID, userID string, isAdmin, isGuest bool, visibility string) error {
	if visibility != "public" && visibility != "private" {
		return matrix.InvalidParam("Invalid visibility setting")
	}
	if isGuest {
		return matrix.Forbidden("Guests cannot edit the published room list")
	}
	ok, err := s.CanChangeRoomList(ctx, roomID, userID, isAdmin)
	if err == errUnknownRoom {
		return matrix.NotFound("Unknown room")
	}
	if err != nil {
		return err
	}
	if !ok {
		return matrix.Forbidden("You need the power to change the room's canonical alias to edit its room list entry")
	}
	if visibility == "public" && s.AccessRules != nil {
		// Only restricted rooms may be published (Tchap's
		// check_visibility_can_be_modified); publishRestricted checks and
		// publishes under the writer lock, so a rule change cannot slip
		// between the two.
		return s.publishRestricted(ctx, roomID)
	}
	if err := s.store.SetRoomPublic(ctx, roomID, visibility == "public"); errors.Is(err, store.ErrNotFound) {
		return matrix.NotFound("Unknown room")
	} else if err != nil {
		return err
	}
	return nil
}

// PublicRoom is one entry of the public room directory
// (Client-Server API, "PublishedRoomsChunk").
type PublicRoom struct {
	RoomID           string `json:"room_id"`
	Name             string `json:"name,omitempty"`
	Topic            string `json:"topic,omitempty"`
	CanonicalAlias   string `json:"canonical_alias,omitempty"`
	NumJoinedMembers int    `json:"num_joined_members"`
	WorldReadable    bool   `json:"world_readable"`
	GuestCanJoin     bool   `json:"guest_can_join"`
	AvatarURL        string `json:"avatar_url,omitempty"`
	JoinRule         string `json:"join_rule,omitempty"`
	RoomType         string `json:"room_type,omitempty"`
}

// PublicRoomsQuery selects a page of the public room directory.
type PublicRoomsQuery struct {
	Offset int
	Limit  int // 0: all
	// SearchTerm matches name, topic and canonical alias, case-insensitively.
	SearchTerm string
	// RoomTypes keeps rooms of these types; "" stands for rooms without a
	// type (the spec's null). nil: all.
	RoomTypes []string
}

// PublicRoomsPage is a page and the count of all matching rooms.
type PublicRoomsPage struct {
	Rooms []PublicRoom
	Total int
}

// PublicRooms lists the published rooms, most joined members first (then
// by room ID, for stable pages). Like Synapse, only rooms that can be
// joined or peeked are listed: join rule public or knock(_restricted), or
// history world_readable; empty rooms are left out.
func (s *Service) PublicRooms(ctx context.Context, q PublicRoomsQuery) (*PublicRoomsPage, error) {
	ids, err := s.store.PublicRoomIDs(ctx)
	if err != nil {
		return nil, err
	}
	term := strings.ToLower(strings.TrimSpace(q.SearchTerm))
	var all []PublicRoom
	for _, id := range ids {
		pr, err := s.publicRoom(ctx, id)
		if err == errUnknownRoom {
			continue
		}
		if err != nil {
			return nil, err
		}
		if pr == nil || pr.NumJoinedMembers == 0 {
			continue
		}
		if !(pr.JoinRule == "public" || pr.JoinRule == "knock" || pr.JoinRule == "knock_restricted" || pr.WorldReadable) {
			continue
		}
		if term != "" && !strings.Contains(strings.ToLower(pr.Name), term) && !strings.Contains(strings.ToLower(pr.Topic), term) &&
			!strings.Contains(strings.ToLower(pr.CanonicalAlias), term) {
			continue
		}
		if q.RoomTypes != nil {
			match := false
			for _, t := range q.RoomTypes {
				if t == pr.RoomType {
					match = true
				}
			}
			if !match {
				continue
			}
		}
		all = append(all, *pr)
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].NumJoinedMembers != all[j].NumJoinedMembers {
			return all[i].NumJoinedMembers > all[j].NumJoinedMembers
		}
		return all[i].RoomID < all[j].RoomID
	})
	page := &PublicRoomsPage{Total: len(all), Rooms: []PublicRoom{}}
	if q.Offset < len(all) {
		end := len(all)
		if q.Limit > 0 {
			end = min(end, q.Offset+q.Limit)
		}
		page.Rooms = all[q.Offset:end]
	}
	return page, nil
}

func (s *Service) publicRoom(ctx context.Context, roomID string) (*PublicRoom, error) {
	e, rs, err := s.lock(ctx, roomID)
	if err != nil {
		return nil, err
	}
	defer s.unlock(e)
	if rs.StateEvent("m.room.tombstone", "") != nil {
		return nil, nil // an upgraded room leaves the directory
	}
	pr := &PublicRoom{RoomID: roomID, NumJoinedMembers: len(rs.joined)}
	str := func(typ, key string) string {
		ev := rs.StateEvent(typ, "")
		if ev == nil {
			return ""
		}
		var c map[string]json.RawMessage
		json.Unmarshal(ev.Content, &c)
		var v string
		json.Unmarshal(c[key], &v)
		return v
	}
	pr.Name = str("m.room.name", "name")
	pr.Topic = str("m.room.topic", "topic")
	pr.CanonicalAlias = str("m.room.canonical_alias", "alias")
	pr.AvatarURL = str("m.room.avatar", "url")
	pr.JoinRule = str("m.room.join_rules", "join_rule")
	pr.RoomType = str("m.room.create", "type")
	pr.WorldReadable = str("m.room.history_visibility", "history_visibility") == "world_readable"
	pr.GuestCanJoin = str("m.room.guest_access", "guest_access") == "can_join"
	return pr, nil
}
