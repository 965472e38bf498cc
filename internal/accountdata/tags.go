package accountdata

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"hash/fnv"
	"sync"

	"conclave/internal/changes"
	"conclave/internal/matrix"
	"conclave/internal/store"
)

// TypeTags is the room account data type room tags are kept in
// (Client-Server API, "Room Tagging"): {"tags": {tag: {order}}}.
const TypeTags = "m.tag"

// MaxTagLen bounds a tag's name.
const MaxTagLen = 255

// maxSwapAttempts bounds the read-modify-write retries of a tag change that
// keeps losing to concurrent changes of the same user's tags in the room.
const maxSwapAttempts = 10

// Tags returns the user's tags on a room ({} when none).
func (s *Service) Tags(ctx context.Context, requester, target, roomID string) (map[string]json.RawMessage, error) {
	if err := Check(requester, target, roomID, TypeTags); err != nil {
		return nil, err
	}
	_, tags, err := s.readTags(ctx, target, roomID)
	return tags, err
}

// SetTag adds or replaces one tag (content is its JSON object: order).
func (s *Service) SetTag(ctx context.Context, requester, target, roomID, tag string, content json.RawMessage) error {
	if err := checkTag(requester, target, roomID, tag); err != nil {
		return err
	}
	var c map[string]json.RawMessage
	if err := json.Unmarshal(content, &c); err != nil || c == nil {
		return matrix.BadJSON("The tag's content must be an object")
	}
	if o, ok := c["order"]; ok {
		var f float64
		if json.Unmarshal(o, &f) != nil {
			return matrix.BadJSON("order must be a number")
		}
	}
	return s.changeTags(ctx, target, roomID, func(tags map[string]json.RawMessage) bool {
		tags[tag] = content
		return true
	})
}

// DeleteTag removes one tag; removing a tag the room does not have is not
// an error (Synapse answers {} too).
func (s *Service) DeleteTag(ctx context.Context, requester, target, roomID, tag string) error {
	if err := checkTag(requester, target, roomID, tag); err != nil {
		return err
	}
	return s.changeTags(ctx, target, roomID, func(tags map[string]json.RawMessage) bool {
		if _, ok := tags[tag]; !ok {
			return false
		}
		delete(tags, tag)
		return true
	})
}

func checkTag(requester, target, roomID, tag string) error {
	if err := Check(requester, target, roomID, TypeTags); err != nil {
		return err
	}
	if roomID == "" {
		return matrix.InvalidParam("Invalid room ID")
	}
	if tag == "" || len(tag) > MaxTagLen {
		return matrix.InvalidParam("A tag must be 1 to %d bytes", MaxTagLen)
	}
	return nil
}

// readTags returns the stored m.tag object (nil if none) and its tags.
func (s *Service) readTags(ctx context.Context, userID, roomID string) (json.RawMessage, map[string]json.RawMessage, error) {
	raw, err := s.store.GetAccountData(ctx, userID, roomID, TypeTags)
	if errors.Is(err, store.ErrNotFound) {
		return nil, map[string]json.RawMessage{}, nil
	}
	if err != nil {
		return nil, nil, err
	}
	var c struct {
		Tags map[string]json.RawMessage `json:"tags"`
	}
	if json.Unmarshal(raw, &c) != nil || c.Tags == nil {
		// Written through the account data API in another shape: the
		// tags start over, as the spec's tag endpoints own this type.
		c.Tags = map[string]json.RawMessage{}
	}
	return raw, c.Tags, nil
}

// changeTags applies change to the user's tags on a room with a
// compare-and-swap, so two tag changes at once (two devices, two
// processes) both land.
func (s *Service) changeTags(ctx context.Context, userID, roomID string, change func(map[string]json.RawMessage) bool) error {
	// One change at a time per user in this process, so a burst of tag
	// changes does not spin on the swap; the swap itself covers changes
	// through other processes.
	mu := &tagLocks[fnv32(userID)%uint32(len(tagLocks))]
	mu.Lock()
	defer mu.Unlock()
	for range maxSwapAttempts {
		old, tags, err := s.readTags(ctx, userID, roomID)
		if err != nil {
			return err
		}
		if !change(tags) {
			return nil
		}
		content, err := json.Marshal(map[string]any{"tags": tags})
		if err != nil {
			return err
		}
		if len(content) > MaxContentBytes {
			return matrix.TooLarge("The room's tags are larger than %d bytes", MaxContentBytes)
		}
		if bytes.Equal(old, content) {
			return nil
		}
		w := s.Changes.Begin(changes.Key{Kind: changes.AccountData, Subject: userID})
		pos, swapped, err := s.store.SwapAccountData(w.Context(ctx), userID, roomID, TypeTags, old, content)
		w.Done(pos)
		if err != nil {
			return err
		}
		if swapped {
			if s.Notify != nil {
				s.Notify(userID)
			}
			return nil
		}
	}
	return matrix.Errorf(503, matrix.ErrUnknown, "The room's tags changed too often to apply this change; try again")
}

// tagLocks serialise tag changes per user (striped: bounded memory).
var tagLocks [64]sync.Mutex

func fnv32(s string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(s))
	return h.Sum32()
}
