package accountdata

import (
	"context"
	"encoding/json"
	"errors"
	"hash/fnv"
	"slices"
	"sync"

	"conclave/internal/matrix"
	"conclave/internal/store"
)

// Room tags (spec: Client-Server API, "Room Tagging"): the m.tag room
// account data, {"tags": {name: {order?}}}, changed one tag at a time.

// TypeTag is the room account data holding a user's tags for the room.
const TypeTag = "m.tag"

// Bounds on tags.
const (
	MaxTagLen      = 255
	MaxTagsPerRoom = 100
)

var tagLocks [64]sync.Mutex // read-modify-write of one user's tags

func lockUser(userID string) func() {
	h := fnv.New32a()
	h.Write([]byte(userID))
	m := &tagLocks[h.Sum32()%uint32(len(tagLocks))]
	m.Lock()
	return m.Unlock
}

func (s *Service) readTags(ctx context.Context, userID, roomID string) (map[string]json.RawMessage, error) {
	c, err := s.store.GetAccountData(ctx, userID, roomID, TypeTag)
	if errors.Is(err, store.ErrNotFound) {
		return map[string]json.RawMessage{}, nil
	}
	if err != nil {
		return nil, err
	}
	var v struct {
		Tags map[string]json.RawMessage `json:"tags"`
	}
	if json.Unmarshal(c, &v) != nil || v.Tags == nil {
		return map[string]json.RawMessage{}, nil
	}
	return v.Tags, nil
}

func (s *Service) writeTags(ctx context.Context, userID, roomID string, tags map[string]json.RawMessage) error {
	b, err := json.Marshal(map[string]any{"tags": tags})
	if err != nil {
		return err
	}
	return s.PutInternal(ctx, userID, roomID, TypeTag, b)
}

// Tags serves GET /user/{userId}/rooms/{roomId}/tags.
func (s *Service) Tags(ctx context.Context, requester, target, roomID string) (map[string]json.RawMessage, error) {
	if err := Check(requester, target, roomID, TypeTag); err != nil {
		return nil, err
	}
	return s.readTags(ctx, target, roomID)
}

// PutTag serves PUT /user/{userId}/rooms/{roomId}/tags/{tag}: content is
// the tag's object; its order, when present, must be a number (spec: "a
// number in a range [0,1]"; like Synapse, other numbers are kept).
func (s *Service) PutTag(ctx context.Context, requester, target, roomID, tag string, content json.RawMessage) error {
	if err := Check(requester, target, roomID, TypeTag); err != nil {
		return err
	}
	if tag == "" || len(tag) > MaxTagLen {
		return matrix.InvalidParam("Tag names are 1 to %d bytes", MaxTagLen)
	}
	var c map[string]json.RawMessage
	if json.Unmarshal(content, &c) != nil || c == nil {
		return matrix.BadJSON("The tag's content must be an object")
	}
	if o, ok := c["order"]; ok {
		var n float64
		if json.Unmarshal(o, &n) != nil {
			return matrix.InvalidParam("order must be a number")
		}
	}
	defer lockUser(target)()
	tags, err := s.readTags(ctx, target, roomID)
	if err != nil {
		return err
	}
	if _, ok := tags[tag]; !ok && len(tags) >= MaxTagsPerRoom {
		return matrix.InvalidParam("At most %d tags per room", MaxTagsPerRoom)
	}
	tags[tag] = content
	return s.writeTags(ctx, target, roomID, tags)
}

// DeleteTag serves DELETE /user/{userId}/rooms/{roomId}/tags/{tag}
// (removing a tag that is not there succeeds, as in Synapse).
func (s *Service) DeleteTag(ctx context.Context, requester, target, roomID, tag string) error {
	if err := Check(requester, target, roomID, TypeTag); err != nil {
		return err
	}
	defer lockUser(target)()
	tags, err := s.readTags(ctx, target, roomID)
	if err != nil {
		return err
	}
	if _, ok := tags[tag]; !ok {
		return nil
	}
	delete(tags, tag)
	return s.writeTags(ctx, target, roomID, tags)
}

// CopyToUpgradedRoom gives a user who joins a room that replaces another
// their tags for the old room (when they have none for the new one), and
// lists the new room wherever m.direct lists the old one — as Synapse does
// on joining an upgraded room (spec "Room upgrades": clients' per-room
// settings should follow).
func (s *Service) CopyToUpgradedRoom(ctx context.Context, userID, oldRoomID, newRoomID string) error {
	defer lockUser(userID)()
	old, err := s.readTags(ctx, userID, oldRoomID)
	if err != nil {
		return err
	}
	if len(old) > 0 {
		cur, err := s.readTags(ctx, userID, newRoomID)
		if err != nil {
			return err
		}
		if len(cur) == 0 {
			if err := s.writeTags(ctx, userID, newRoomID, old); err != nil {
				return err
			}
		}
	}
	raw, err := s.store.GetAccountData(ctx, userID, "", "m.direct")
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var direct map[string][]string
	if json.Unmarshal(raw, &direct) != nil {
		return nil // not ours to repair
	}
	changed := false
	for u, rooms := range direct {
		if slices.Contains(rooms, oldRoomID) && !slices.Contains(rooms, newRoomID) {
			direct[u] = append(rooms, newRoomID)
			changed = true
		}
	}
	if !changed {
		return nil
	}
	b, err := json.Marshal(direct)
	if err != nil {
		return err
	}
	return s.PutInternal(ctx, userID, "", "m.direct", b)
}
