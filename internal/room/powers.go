package room

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
)

// Power level lookups for decisions the room service takes outside the
// authorisation rules (aliases, the room directory, upgrades), through the
// same parsed power levels the rules use.

// plInt reads a power level leniently: an integer, or (before room version
// 10) a string holding one. Anything else counts as def. Upgrades use it to
// normalise old rooms' levels into integers.
func plInt(raw json.RawMessage, def int64) int64 {
	if len(raw) == 0 {
		return def
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		if v, err := n.Int64(); err == nil {
			return v
		}
		return def
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64); err == nil {
			return v
		}
	}
	return def
}

// userPower is the user's power level (room version 12 creators: infinite).
func (rs *roomState) userPower(userID string) int64 {
	pl, err := rs.powerLevels()
	if err != nil {
		return 0
	}
	return pl.UserLevel(userID)
}

// canSendState reports whether a joined user may send state of type typ.
func (rs *roomState) canSendState(userID, typ string) bool {
	if rs.membership(userID) != "join" {
		return false
	}
	pl, err := rs.powerLevels()
	return err == nil && pl.UserLevel(userID) >= pl.EventLevel(typ, true)
}

// CanChangeRoomList reports whether the user may publish the room in the
// directory or delete others' aliases: a server admin, or a joined member
// with the power to send m.room.canonical_alias (Synapse's rule; the spec
// leaves it to the server).
func (s *Service) CanChangeRoomList(ctx context.Context, roomID, userID string, isAdmin bool) (bool, error) {
	if isAdmin {
		return true, nil
	}
	e, rs, err := s.lock(ctx, roomID)
	if err != nil {
		return false, err
	}
	defer s.unlock(e)
	return rs.canSendState(userID, "m.room.canonical_alias"), nil
}
