package room

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"

	"conclave/internal/accessrules"
	"conclave/internal/event"
	"conclave/internal/matrix"
	"conclave/internal/store"
)

// copiedOnUpgrade is the state carried into the replacement room, as
// Synapse does (Client-Server API, "Room Upgrades", server behaviour: the
// server "should" transfer state that is relevant).
var copiedOnUpgrade = []string{
	"m.room.join_rules", "m.room.history_visibility", "m.room.guest_access", "m.room.name",
	"m.room.topic", "m.room.avatar", "m.room.encryption", "m.room.server_acl", "m.room.canonical_alias",
	// The access rule last (internal/accessrules): the replacement keeps
	// who may be in it, and the state copied before was allowed under it.
	accessrules.EventType,
}

// UpgradeRoom replaces a room with a new one of another version
// (POST /rooms/{roomId}/upgrade). The upgrader needs the power to send
// m.room.tombstone. The new room gets the old room's relevant state, bans,
// aliases and directory listing, with m.room.create.predecessor naming the
// old room; the old room gets the tombstone, raised power levels for
// speaking and inviting (events_default and invite at least
// max(50, users_default+1)) and loses its canonical alias.
//
// The old room's writer lock is held throughout, so nothing else happens in
// it meanwhile. The new room is persisted in one transaction and the old
// room's events in another: if the second fails, an unannounced new room
// remains, as it would in Synapse.
//
// additionalCreators (Client-Server API v1.16, POST /upgrade,
// additional_creators) become the new room's additional creators when its
// version privileges creators (12+), and are then left out of its power
// levels' users like the upgrader; for other versions they are ignored, as
// Synapse does.
func (s *Service) UpgradeRoom(ctx context.Context, roomID, userID, deviceID, newVersion string, additionalCreators []string) (string, error) {
	rv, ok := event.GetRoomVersion(newVersion)
	if !ok || !rv.Creatable() {
		return "", matrix.Errorf(http.StatusBadRequest, matrix.ErrUnsupportedRoomVer, "Room version %q is not supported", newVersion)
	}
	if !rv.PrivilegedCreators {
		additionalCreators = nil
	}
	oldRoom, err := s.store.GetRoom(ctx, roomID)
	if errors.Is(err, store.ErrNotFound) {
		return "", matrix.NotFound("Unknown room %s", roomID)
	}
	if err != nil {
		return "", err
	}
	// The cross-process writer lock first, then the local one, as every
	// write takes them (retry).
	unlock, err := s.lockShared(ctx, roomID)
	if err != nil {
		return "", err
	}
	defer unlock()
	e, old, err := s.lock(ctx, roomID)
	if err != nil {
		return "", err
	}
	defer s.unlock(e)
	if old.membership(userID) != "join" {
		return "", matrix.Forbidden("You are not in the room")
	}
	if !old.canSendState(userID, "m.room.tombstone") {
		return "", matrix.Forbidden("You don't have permission to upgrade the room")
	}

	// The new room.
	newID := ""
	if !rv.RoomIDFromCreateEvent {
		newID = "!" + randomString(18) + ":" + s.serverName
	}
	rs := newRoomState(newID, rv)
	var pdus []*event.PDU
	var rows []store.NewEvent
	add := func(typ string, key string, content any) error {
		raw, err := json.Marshal(content)
		if err != nil {
			return matrix.BadJSON("%s", err.Error())
		}
		sk := key
		pdu, err := s.build(ctx, rs, &event.Proto{Type: typ, StateKey: &sk, Sender: userID, Content: raw})
		if err != nil {
			return err
		}
		if rs.roomID == "" {
			rs.roomID = event.RoomIDForCreate(pdu)
			pdu.RoomID = rs.roomID
		}
		rows = append(rows, newEvent(rs, pdu, "", ""))
		pdus = append(pdus, pdu)
		rs.apply(pdu)
		rs.extremities = []string{pdu.EventID}
		rs.depth = pdu.Depth
		return nil
	}

	var oldCreate map[string]json.RawMessage
	if ev := old.StateEvent("m.room.create", ""); ev != nil {
		json.Unmarshal(ev.Content, &oldCreate)
	}
	create := map[string]any{"room_version": rv.ID}
	for _, k := range []string{"type", "m.federate"} {
		if v, ok := oldCreate[k]; ok {
			create[k] = v
		}
	}
	if !rv.CreatorIsSender {
		create["creator"] = userID
	}
	if additionalCreators != nil {
		create["additional_creators"] = additionalCreators
	}
	// predecessor.event_id is "the last known event in the old room"; room
	// version 12 drops it (the room ID alone names the predecessor).
	pred := map[string]string{"room_id": roomID}
	if !rv.RoomIDFromCreateEvent && len(old.extremities) > 0 {
		pred["event_id"] = old.extremities[0]
	}
	create["predecessor"] = pred
	if err := add("m.room.create", "", create); err != nil {
		return "", err
	}
	member := map[string]any{"membership": "join"}
	s.addProfile(ctx, userID, member)
	if err := add("m.room.member", userID, member); err != nil {
		return "", err
	}

	finalPL, tempPL := upgradedPowerLevels(old, rv, userID, additionalCreators)
	if err := add("m.room.power_levels", "", tempPL); err != nil {
		return "", err
	}
	for _, typ := range copiedOnUpgrade {
		if ev := old.StateEvent(typ, ""); ev != nil && !isEmptyObject(ev.Content) {
			if err := add(typ, "", ev.Content); err != nil {
				return "", err
			}
		}
	}
	for k, ev := range old.state {
		if k.typ == "m.room.member" && k.key != userID && membershipOf(ev) == "ban" {
			if err := add("m.room.member", k.key, map[string]string{"membership": "ban"}); err != nil {
				return "", err
			}
		}
	}
	if finalPL != nil {
		if err := add("m.room.power_levels", "", finalPL); err != nil {
			return "", err
		}
	}

	// The old room's closing events, built on a scratch copy of its state.
	oldPDUs, oldRows, err := s.closingEvents(ctx, old, userID, deviceID, rs.roomID)
	if err != nil {
		return "", err
	}

	// Persist the new room, then close the old one.
	ne, _, err := s.lockNew(rs)
	if err != nil {
		return "", err
	}
	room := &store.Room{RoomID: rs.roomID, Version: rv.ID, Creator: userID, CreatedTS: s.now().UnixMilli(), Public: oldRoom.Public}
	s.addPushActions(ctx, rs, pdus, rows)
	// Queued for the servers afterCommit computes on fresh state.
	s.addFed(newRoomState(rs.roomID, rv), pdus, rows)
	ctx, done := s.begin(ctx, rs.roomID, rows)
	positions, err := s.store.CreateRoom(ctx, room, rows)
	if err != nil {
		positions = nil
	}
	done(positions)
	if err != nil {
		ne.state = nil
		s.unlock(ne)
		return "", err
	}
	s.parsed.setVersion(rs.roomID, rv)
	fresh := newRoomState(rs.roomID, rv)
	ne.state = fresh
	s.afterCommit(fresh, pdus, positions)
	s.unlock(ne)

	// Another process may write to the old room meanwhile: then its closing
	// events are rebuilt on the reloaded state, as retry does for sends.
	for attempt := 1; ; attempt++ {
		err := s.commit(ctx, old, oldPDUs, oldRows)
		if err == nil {
			break
		}
		if !errors.Is(err, errRoomChanged) {
			return "", err
		}
		if attempt == maxWriteAttempts || ctx.Err() != nil {
			return "", errBusy
		}
		if old, err = s.loadState(ctx, roomID); err != nil {
			return "", err
		}
		e.state = old
		if oldPDUs, oldRows, err = s.closingEvents(ctx, old, userID, deviceID, rs.roomID); err != nil {
			return "", err
		}
	}
	if err := s.store.MoveAliases(ctx, roomID, rs.roomID); err != nil {
		return "", err
	}
	if oldRoom.Public {
		if err := s.store.SetRoomPublic(ctx, roomID, false); err != nil {
			return "", err
		}
	}
	return rs.roomID, nil
}

// closingEvents builds the old room's events of an upgrade on a scratch copy
// of its state: the tombstone naming the replacement, then (best effort, as
// in Synapse: an upgrader without the power to change these still upgrades)
// restricted power levels and an emptied canonical alias.
func (s *Service) closingEvents(ctx context.Context, old *roomState, userID, deviceID, newRoomID string) ([]*event.PDU, []store.NewEvent, error) {
	scratch := old.clone()
	var pdus []*event.PDU
	var rows []store.NewEvent
	add := func(typ string, content any) error {
		raw, _ := json.Marshal(content)
		empty := ""
		pdu, err := s.build(ctx, scratch, &event.Proto{Type: typ, StateKey: &empty, Sender: userID, Content: raw})
		if err != nil {
			return err
		}
		rows = append(rows, newEvent(scratch, pdu, deviceID, ""))
		pdus = append(pdus, pdu)
		scratch.apply(pdu)
		scratch.extremities = []string{pdu.EventID}
		scratch.depth = pdu.Depth
		return nil
	}
	if err := add("m.room.tombstone", map[string]string{"body": "This room has been replaced", "replacement_room": newRoomID}); err != nil {
		return nil, nil, err
	}
	if pl := restrictedPowerLevels(old); pl != nil {
		add("m.room.power_levels", pl)
	}
	if ev := old.StateEvent("m.room.canonical_alias", ""); ev != nil && !isEmptyObject(ev.Content) {
		add("m.room.canonical_alias", map[string]any{})
	}
	return pdus, rows, nil
}

func isEmptyObject(b json.RawMessage) bool {
	var m map[string]json.RawMessage
	return json.Unmarshal(b, &m) == nil && len(m) == 0
}

// plFields are the power level keys holding a single level.
var plFields = []string{"ban", "kick", "redact", "invite", "events_default", "state_default", "users_default"}

// normalisedPowerLevels copies power level content with every level as an
// integer (room version 10+ refuses strings), keeping other keys as they are.
func normalisedPowerLevels(content json.RawMessage) map[string]any {
	var c map[string]json.RawMessage
	json.Unmarshal(content, &c)
	out := map[string]any{}
	for k, v := range c {
		out[k] = v
	}
	for _, k := range plFields {
		if v, ok := c[k]; ok {
			out[k] = plInt(v, 0)
		}
	}
	for _, k := range []string{"users", "events", "notifications"} {
		var m map[string]json.RawMessage
		if json.Unmarshal(c[k], &m) != nil {
			continue
		}
		levels := make(map[string]int64, len(m))
		for name, v := range m {
			levels[name] = plInt(v, 0)
		}
		out[k] = levels
	}
	return out
}

// upgradedPowerLevels returns the new room's power levels: the old ones,
// with the upgrader keeping their level. If that level is too low to send
// the copied state, the first event (temp) raises it and final restores it;
// final is nil when temp is already right. Creators of room version 12+ (the
// upgrader and additionalCreators) have infinite power and are never listed
// in users.
func upgradedPowerLevels(old *roomState, rv *event.RoomVersion, userID string, additionalCreators []string) (final, temp map[string]any) {
	var content json.RawMessage
	if ev := old.StateEvent("m.room.power_levels", ""); ev != nil {
		content = ev.Content
	}
	pl := normalisedPowerLevels(content)
	users, _ := pl["users"].(map[string]int64)
	if users == nil {
		users = map[string]int64{}
	}
	level := old.userPower(userID)
	if level == math.MaxInt64 { // a room version 12 creator
		level = 100
		for _, v := range users {
			level = max(level, v)
		}
	}
	if rv.PrivilegedCreators {
		delete(users, userID)
		for _, c := range additionalCreators {
			delete(users, c)
		}
		pl["users"] = users
		return nil, pl
	}
	users[userID] = level
	pl["users"] = users
	needed := int64(100)
	for _, k := range plFields {
		if v, ok := pl[k].(int64); ok {
			needed = max(needed, v)
		}
	}
	if ev, ok := pl["events"].(map[string]int64); ok {
		for _, v := range ev {
			needed = max(needed, v)
		}
	}
	if level >= needed {
		return nil, pl
	}
	temp = make(map[string]any, len(pl))
	for k, v := range pl {
		temp[k] = v
	}
	tu := make(map[string]int64, len(users))
	for k, v := range users {
		tu[k] = v
	}
	tu[userID] = needed
	temp["users"] = tu
	return pl, temp
}

// restrictedPowerLevels raises events_default and invite in the old room to
// max(50, users_default+1), so ordinary members can no longer speak or
// invite there. nil if nothing changes.
func restrictedPowerLevels(old *roomState) map[string]any {
	ev := old.StateEvent("m.room.power_levels", "")
	if ev == nil {
		return nil
	}
	var c map[string]json.RawMessage
	if json.Unmarshal(ev.Content, &c) != nil {
		return nil
	}
	restricted := max(int64(50), plInt(c["users_default"], 0)+1)
	out := map[string]any{}
	for k, v := range c {
		out[k] = v
	}
	changed := false
	for _, k := range []string{"events_default", "invite"} {
		if plInt(c[k], 0) < restricted {
			out[k] = restricted
			changed = true
		}
	}
	if !changed {
		return nil
	}
	return out
}
