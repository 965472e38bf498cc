package room

import (
	"context"
	"encoding/json"
	"math"
	"strconv"
	"strings"
)

// Power level lookups for decisions the room service takes outside the
// authorisation rules (aliases, the room directory, upgrades). They read
// m.room.power_levels with the spec's defaults (Client-Server API,
// "m.room.power_levels"): without the event, the creator has 100, everyone
// else 0, and state_default is 0; with it, state_default defaults to 50.

type plView struct {
	present       bool
	users         map[string]json.RawMessage
	events        map[string]json.RawMessage
	usersDefault  int64
	eventsDefault int64
	stateDefault  int64
	invite        int64
}

// plInt reads a power level: an integer, or (before room version 10) a
// string holding one. Anything else counts as def.
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

func (rs *roomState) plView() *plView {
	v := &plView{}
	ev := rs.StateEvent("m.room.power_levels", "")
	if ev == nil {
		return v
	}
	var c map[string]json.RawMessage
	if json.Unmarshal(ev.Content, &c) != nil {
		return v
	}
	v.present = true
	json.Unmarshal(c["users"], &v.users)
	json.Unmarshal(c["events"], &v.events)
	v.usersDefault = plInt(c["users_default"], 0)
	v.eventsDefault = plInt(c["events_default"], 0)
	v.stateDefault = plInt(c["state_default"], 50)
	v.invite = plInt(c["invite"], 0)
	return v
}

// creators are the room's creators: the create event's sender (or
// content.creator before room version 11) and, from room version 12,
// content.additional_creators.
func (rs *roomState) creators() []string {
	ev := rs.StateEvent("m.room.create", "")
	if ev == nil {
		return nil
	}
	var c struct {
		Creator            string   `json:"creator"`
		AdditionalCreators []string `json:"additional_creators"`
	}
	json.Unmarshal(ev.Content, &c)
	if !rs.version.CreatorIsSender && c.Creator != "" {
		return []string{c.Creator}
	}
	out := []string{ev.Sender}
	if rs.version.PrivilegedCreators {
		out = append(out, c.AdditionalCreators...)
	}
	return out
}

func (rs *roomState) isCreator(userID string) bool {
	for _, c := range rs.creators() {
		if c == userID {
			return true
		}
	}
	return false
}

// userPower is the user's power level; room version 12 creators have
// infinite power (math.MaxInt64 here).
func (rs *roomState) userPower(userID string) int64 {
	if rs.version.PrivilegedCreators && rs.isCreator(userID) {
		return math.MaxInt64
	}
	v := rs.plView()
	if !v.present {
		if rs.isCreator(userID) {
			return 100
		}
		return 0
	}
	if raw, ok := v.users[userID]; ok {
		return plInt(raw, v.usersDefault)
	}
	return v.usersDefault
}

// stateLevel is the power needed to send a state event of type typ.
func (rs *roomState) stateLevel(typ string) int64 {
	v := rs.plView()
	if !v.present {
		return 0
	}
	if raw, ok := v.events[typ]; ok {
		return plInt(raw, v.stateDefault)
	}
	return v.stateDefault
}

// canSendState reports whether a joined user may send state of type typ.
func (rs *roomState) canSendState(userID, typ string) bool {
	return rs.membership(userID) == "join" && rs.userPower(userID) >= rs.stateLevel(typ)
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
	defer e.mu.Unlock()
	return rs.canSendState(userID, "m.room.canonical_alias"), nil
}
