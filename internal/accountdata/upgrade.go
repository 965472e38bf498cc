package accountdata

import (
	"context"
	"encoding/json"
	"errors"
	"slices"

	"conclave/internal/store"
)

// CopyToUpgradedRoom gives a user who joins a room that replaces another
// their tags for the old room (when they have none for the new one), and
// lists the new room wherever m.direct lists the old one — as Synapse does
// on joining an upgraded room (spec "Room upgrades": clients' per-room
// settings should follow).
func (s *Service) CopyToUpgradedRoom(ctx context.Context, userID, oldRoomID, newRoomID string) error {
	_, old, err := s.readTags(ctx, userID, oldRoomID)
	if err != nil {
		return err
	}
	if len(old) > 0 {
		err := s.changeTags(ctx, userID, newRoomID, func(tags map[string]json.RawMessage) bool {
			if len(tags) > 0 {
				return false // the user tagged the new room already
			}
			for k, v := range old {
				tags[k] = v
			}
			return true
		})
		if err != nil {
			return err
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
