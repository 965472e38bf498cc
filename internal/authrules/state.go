package authrules

import (
	"encoding/json"
	"errors"

	"conclave/internal/event"
)

// Event types and membership values the rules refer to.
const (
	TypeCreate           = "m.room.create"
	TypeMember           = "m.room.member"
	TypeJoinRules        = "m.room.join_rules"
	TypePowerLevels      = "m.room.power_levels"
	TypeThirdPartyInvite = "m.room.third_party_invite"
	TypeRedaction        = "m.room.redaction"
	TypeAliases          = "m.room.aliases"

	MembershipJoin   = "join"
	MembershipInvite = "invite"
	MembershipLeave  = "leave"
	MembershipBan    = "ban"
	MembershipKnock  = "knock"

	JoinRulePublic          = "public"
	JoinRuleInvite          = "invite"
	JoinRuleKnock           = "knock"
	JoinRuleRestricted      = "restricted"
	JoinRuleKnockRestricted = "knock_restricted"
	JoinRulePrivate         = "private"
)

// StateGetter returns the state event for (type, state_key) among the auth
// state, or nil. The auth state is either the events named by an event's
// auth_events (see AuthEventsState) or, when a server checks an event it is
// about to create, the room's current state.
type StateGetter interface {
	StateEvent(eventType, stateKey string) *event.PDU
}

// PowerLevelsCache may be implemented by a StateGetter that keeps the parsed
// power levels of its state (ParsePowerLevels of its m.room.power_levels and
// m.room.create events). Check then skips reading the power levels event,
// which makes authorising ordinary messages cheaper. Returning nil makes Check
// read them itself. The cached value must match the state exactly.
type PowerLevelsCache interface {
	CachedPowerLevels() *PowerLevels
}

// StateKey names a state entry.
type StateKey struct{ Type, StateKey string }

// StateMap is a simple StateGetter.
type StateMap map[StateKey]*event.PDU

// StateEvent implements StateGetter.
func (m StateMap) StateEvent(eventType, stateKey string) *event.PDU {
	return m[StateKey{eventType, stateKey}]
}

// Membership returns content.membership of an m.room.member event, or "" for
// a nil event (no membership). A present but non-string membership is an
// error.
func Membership(ev *event.PDU) (string, error) {
	if ev == nil {
		return "", nil
	}
	raw, found, err := lookup(ev.Content, "membership")
	if err != nil {
		return "", err
	}
	if !found {
		return "", errors.New("authrules: m.room.member content has no membership")
	}
	return internString(raw, "membership")
}

// JoinRule returns content.join_rule of an m.room.join_rules event, or "" for
// a nil event or when the key is absent. A non-string join_rule is an error.
func JoinRule(ev *event.PDU) (string, error) {
	if ev == nil {
		return "", nil
	}
	raw, found, err := lookup(ev.Content, "join_rule")
	if err != nil || !found {
		return "", err
	}
	return internString(raw, "join_rule")
}

// internString decodes a raw JSON string, returning the package constants for
// the usual membership and join rule values so that the hot path does not
// allocate.
func internString(raw []byte, what string) (string, error) {
	for _, k := range [...]string{MembershipJoin, MembershipInvite, MembershipLeave, MembershipBan,
		MembershipKnock, JoinRulePublic, JoinRuleRestricted, JoinRuleKnockRestricted, JoinRulePrivate} {
		if rawEquals(raw, k) {
			return k, nil
		}
	}
	s, ok := stringValue(raw)
	if !ok {
		return "", errors.New("authrules: " + what + " is not a string")
	}
	return s, nil
}

// membershipIn returns the current membership of userID in the auth state,
// "" when there is none. A malformed member event counts as no membership.
func membershipIn(state StateGetter, userID string) string {
	m, err := Membership(state.StateEvent(TypeMember, userID))
	if err != nil {
		return ""
	}
	return m
}

// Creators lists the room creators given the m.room.create event, following
// the room version in create.Version (nil: treated as v1–v10):
//   - v1–v10: content.creator (rule 1.4 of those versions requires it);
//   - v11 (CreatorIsSender): the sender;
//   - v12 (PrivilegedCreators): the sender plus every string in
//     content.additional_creators (room version 12, "Room creators").
func Creators(create *event.PDU) []string {
	if create == nil {
		return nil
	}
	return creators(create.Version, create)
}

// creators is Creators under the rules of room version rv (nil: v1–v10).
func creators(rv *event.RoomVersion, create *event.PDU) []string {
	if create == nil {
		return nil
	}
	if rv == nil || !rv.CreatorIsSender {
		raw, found, err := lookup(create.Content, "creator")
		if err != nil || !found {
			return nil
		}
		if s, ok := stringValue(raw); ok {
			return []string{s}
		}
		return nil
	}
	out := []string{create.Sender}
	if rv.PrivilegedCreators {
		var extra []json.RawMessage
		if raw, found, err := lookup(create.Content, "additional_creators"); err == nil && found &&
			json.Unmarshal(raw, &extra) == nil {
			for _, e := range extra {
				if s, ok := stringValue(e); ok {
					out = append(out, s)
				}
			}
		}
	}
	return out
}

// isCreator reports whether userID is a room creator, without allocating in
// the common case.
func isCreator(rv *event.RoomVersion, create *event.PDU, userID string) bool {
	if create == nil {
		return false
	}
	if rv == nil || !rv.CreatorIsSender {
		raw, found, err := lookup(create.Content, "creator")
		return err == nil && found && rawEquals(raw, userID)
	}
	if create.Sender == userID {
		return true
	}
	if !rv.PrivilegedCreators {
		return false
	}
	raw, found, err := lookup(create.Content, "additional_creators")
	if err != nil || !found {
		return false
	}
	hit := false
	_ = forEachElement(raw, func(e []byte) bool {
		if rawEquals(e, userID) {
			hit = true
			return false
		}
		return true
	})
	return hit
}

// federates reports whether content["m.federate"] of the create event is
// anything but the JSON value false (Client-Server API, m.room.create: it
// defaults to true).
func federates(create *event.PDU) bool {
	raw, found, err := lookup(create.Content, "m.federate")
	return err != nil || !found || string(raw) != "false"
}
