package authrules

import (
	"encoding/json"

	"conclave/internal/event"
)

// StateKey names a piece of room state.
type StateKey struct{ Type, StateKey string }

// Needed lists the state a new event must cite in auth_events
// (Server-Server API, "Auth events selection"). From room version 12 the
// create event is never cited: the room ID names it.
func Needed(rv *event.RoomVersion, eventType string, stateKey *string, sender string, content json.RawMessage) []StateKey {
	if eventType == "m.room.create" {
		return nil
	}
	out := make([]StateKey, 0, 5)
	if !rv.RoomIDFromCreateEvent {
		out = append(out, StateKey{"m.room.create", ""})
	}
	out = append(out, StateKey{"m.room.power_levels", ""}, StateKey{"m.room.member", sender})
	if eventType != "m.room.member" || stateKey == nil {
		return out
	}
	if *stateKey != sender {
		out = append(out, StateKey{"m.room.member", *stateKey})
	}
	var c struct {
		Membership       string `json:"membership"`
		AuthorisedVia    string `json:"join_authorised_via_users_server"`
		ThirdPartyInvite *struct {
			Signed struct {
				Token string `json:"token"`
			} `json:"signed"`
		} `json:"third_party_invite"`
	}
	json.Unmarshal(content, &c)
	switch c.Membership {
	case "join", "invite", "knock":
		out = append(out, StateKey{"m.room.join_rules", ""})
	}
	if c.Membership == "invite" && c.ThirdPartyInvite != nil && c.ThirdPartyInvite.Signed.Token != "" {
		out = append(out, StateKey{"m.room.third_party_invite", c.ThirdPartyInvite.Signed.Token})
	}
	if c.Membership == "join" && rv.RestrictedJoins && c.AuthorisedVia != "" {
		out = append(out, StateKey{"m.room.member", c.AuthorisedVia})
	}
	return out
}
