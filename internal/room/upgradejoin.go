package room

import (
	"encoding/json"

	"conclave/internal/authrules"
	"conclave/internal/event"
	"conclave/internal/matrix"
)

// Client-Server API, "Room upgrades", server behaviour: "When a user joins
// the new room, the server should automatically transfer/replicate some of
// the user's personalized settings such as notifications, tags, etc." The
// room service only spots such joins; what is copied is the hook's business
// (homeserver/wiring.go). The upgrader's own join in UpgradeRoom, a manual
// upgrade (createRoom with a predecessor) and later joins all count.

// newLocalJoin reports whether pdu, about to be applied to rs, makes a user
// of this server joined who was not.
func (s *Service) newLocalJoin(rs *roomState, pdu *event.PDU) bool {
	if s.OnUpgradedRoomJoin == nil || pdu.Type != "m.room.member" || pdu.StateKey == nil || matrix.ServerOf(*pdu.StateKey) != s.serverName {
		return false
	}
	m, _ := authrules.Membership(pdu)
	return m == authrules.MembershipJoin && rs.membership(*pdu.StateKey) != authrules.MembershipJoin
}

// upgradedRoomJoins calls OnUpgradedRoomJoin for each user when the room has
// a predecessor.
func (s *Service) upgradedRoomJoins(rs *roomState, users []string) {
	if len(users) > 0 {
		s.upgradedRoomJoinsOf(rs.StateEvent("m.room.create", ""), rs.roomID, users)
	}
}

// upgradedRoomJoinsOf is upgradedRoomJoins given the room's create event:
// for a room joined through another server (ImportJoin), whose state is not
// loaded here.
func (s *Service) upgradedRoomJoinsOf(create *event.PDU, roomID string, users []string) {
	if create == nil || s.OnUpgradedRoomJoin == nil {
		return
	}
	var c struct {
		Predecessor struct {
			RoomID string `json:"room_id"`
		} `json:"predecessor"`
	}
	if json.Unmarshal(create.Content, &c) != nil || !matrix.ValidRoomID(c.Predecessor.RoomID) || c.Predecessor.RoomID == roomID {
		return
	}
	for _, u := range users {
		if matrix.ServerOf(u) == s.serverName {
			s.OnUpgradedRoomJoin(u, c.Predecessor.RoomID, roomID)
		}
	}
}
