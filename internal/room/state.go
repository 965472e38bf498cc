package room

import (
	"encoding/json"

	"conclave/internal/authrules"
	"conclave/internal/event"
)

type stateKey struct{ typ, key string }

// roomState is a room's current state as the writer sees it. It is only
// touched under the room's writer lock.
type roomState struct {
	roomID      string
	version     *event.RoomVersion
	state       map[stateKey]*event.PDU
	joined      map[string]struct{}
	extremities []string
	depth       int64
	// pl caches the parsed power levels; nil until asked, reset whenever
	// m.room.power_levels or m.room.create changes.
	pl *authrules.PowerLevels
	// stale: the store refused a write built on this state because the
	// room moved on (store.ErrRoomChanged); it is reloaded on next lock.
	stale bool
}

func newRoomState(roomID string, rv *event.RoomVersion) *roomState {
	return &roomState{roomID: roomID, version: rv, state: make(map[stateKey]*event.PDU), joined: make(map[string]struct{})}
}

// StateEvent implements authrules.StateGetter.
func (rs *roomState) StateEvent(typ, key string) *event.PDU {
	return rs.state[stateKey{typ, key}]
}

func (rs *roomState) apply(pdu *event.PDU) {
	if pdu.StateKey == nil {
		return
	}
	rs.state[stateKey{pdu.Type, *pdu.StateKey}] = pdu
	if pdu.Type == "m.room.power_levels" || pdu.Type == "m.room.create" {
		rs.pl = nil
	}
	if pdu.Type == "m.room.member" {
		if m, _ := authrules.Membership(pdu); m == "join" {
			rs.joined[*pdu.StateKey] = struct{}{}
		} else {
			delete(rs.joined, *pdu.StateKey)
		}
	}
}

// remove drops a piece of state (a state resolution may drop a key).
func (rs *roomState) remove(typ, key string) {
	delete(rs.state, stateKey{typ, key})
	if typ == "m.room.power_levels" || typ == "m.room.create" {
		rs.pl = nil
	}
	if typ == "m.room.member" {
		delete(rs.joined, key)
	}
}

// clone copies the state so a multi-event operation can build on a scratch
// copy and only publish it once persisted.
func (rs *roomState) clone() *roomState {
	c := &roomState{roomID: rs.roomID, version: rs.version, depth: rs.depth,
		state:       make(map[stateKey]*event.PDU, len(rs.state)),
		joined:      make(map[string]struct{}, len(rs.joined)),
		extremities: append([]string(nil), rs.extremities...)}
	for k, v := range rs.state {
		c.state[k] = v
	}
	for k := range rs.joined {
		c.joined[k] = struct{}{}
	}
	return c
}

func (rs *roomState) membership(userID string) string {
	if ev := rs.StateEvent("m.room.member", userID); ev != nil {
		m, _ := authrules.Membership(ev)
		return m
	}
	return ""
}

// joinedUsers lists joined members plus extra users, without duplicates.
func (rs *roomState) joinedUsers(extra []string) []string {
	out := make([]string, 0, len(rs.joined)+len(extra))
	for u := range rs.joined {
		out = append(out, u)
	}
	for _, u := range extra {
		if _, ok := rs.joined[u]; !ok {
			out = append(out, u)
		}
	}
	return out
}

// CachedPowerLevels implements authrules.PowerLevelsCache, so ordinary
// events are authorised without re-reading the power levels event.
func (rs *roomState) CachedPowerLevels() *authrules.PowerLevels {
	pl, err := rs.powerLevels()
	if err != nil {
		return nil
	}
	return pl
}

func (rs *roomState) powerLevels() (*authrules.PowerLevels, error) {
	if rs.pl != nil {
		return rs.pl, nil
	}
	var content json.RawMessage
	if pl := rs.StateEvent("m.room.power_levels", ""); pl != nil {
		content = pl.Content
	}
	pl, err := authrules.ParsePowerLevels(rs.version, content, rs.StateEvent("m.room.create", ""))
	if err == nil {
		rs.pl = pl
	}
	return pl, err
}

// contentIndex extracts what the store indexes from content: the relation
// (m.relates_to.event_id and rel_type) and whether content.url is a string.
func contentIndex(content json.RawMessage) (relatesTo, relType string, containsURL bool) {
	var c struct {
		RelatesTo *struct {
			EventID string `json:"event_id"`
			RelType string `json:"rel_type"`
		} `json:"m.relates_to"`
		URL json.RawMessage `json:"url"`
	}
	if json.Unmarshal(content, &c) != nil {
		return "", "", false
	}
	if c.RelatesTo != nil && c.RelatesTo.RelType != "" {
		relatesTo, relType = c.RelatesTo.EventID, c.RelatesTo.RelType
	}
	return relatesTo, relType, len(c.URL) > 0 && c.URL[0] == '"'
}
