package authrules

import (
	"encoding/json"

	"conclave/internal/event"
)

// Needed lists the (type, state_key) pairs an event must cite in auth_events
// if they exist in the room state (Server-Server API, "Auth events
// selection"): the m.room.create event (not from v12, where room_id implies
// it), the current m.room.power_levels, the sender's m.room.member and, for
// m.room.member events, the target's membership, the join rules (for join,
// invite and knock), the m.room.third_party_invite named by
// content.third_party_invite.signed.token (for invites) and the authorising
// user's membership (for joins with join_authorised_via_users_server, v8+).
// An m.room.create event has no auth events. The result has no duplicates.
func Needed(rv *event.RoomVersion, eventType string, stateKey *string, sender string, content json.RawMessage) []StateKey {
	if eventType == TypeCreate {
		return nil
	}
	out := make([]StateKey, 0, 6)
	add := func(k StateKey) {
		for _, e := range out {
			if e == k {
				return
			}
		}
		out = append(out, k)
	}
	if !rv.RoomIDFromCreateEvent {
		add(StateKey{TypeCreate, ""})
	}
	add(StateKey{TypePowerLevels, ""})
	add(StateKey{TypeMember, sender})
	if eventType != TypeMember || stateKey == nil {
		return out
	}
	add(StateKey{TypeMember, *stateKey})
	var membership string
	if raw, found, err := lookup(content, "membership"); err == nil && found {
		membership, _ = stringValue(raw)
	}
	switch membership {
	case MembershipJoin, MembershipInvite, MembershipKnock:
		add(StateKey{TypeJoinRules, ""})
	}
	if membership == MembershipInvite {
		if tpi, found, err := lookup(content, "third_party_invite"); err == nil && found && isObject(tpi) {
			if signed, found, err := lookup(tpi, "signed"); err == nil && found && isObject(signed) {
				if tok, found, err := lookup(signed, "token"); err == nil && found {
					if s, ok := stringValue(tok); ok {
						add(StateKey{TypeThirdPartyInvite, s})
					}
				}
			}
		}
	}
	if membership == MembershipJoin && rv.RestrictedJoins {
		if raw, found, err := lookup(content, keyAuthorisedVia); err == nil && found {
			if s, ok := stringValue(raw); ok {
				add(StateKey{TypeMember, s})
			}
		}
	}
	return out
}

// CheckAuthEvents applies the rule "Considering the event's auth_events"
// (rule 2 in v1–v11, rule 3 in v12) to ev and the events its auth_events
// name. authEvents must be exactly the accepted events among ev.AuthEvents:
// an event ID with no matching entry (unknown, or rejected — rule "entries
// which were themselves rejected") makes the event rejected.
func CheckAuthEvents(ev *event.PDU, authEvents []*event.PDU) error {
	rv := ev.Version
	if rv == nil {
		return reject("version", "event has no room version")
	}
	if ev.Type == TypeCreate {
		// Rule 1 decides m.room.create before auth_events are considered.
		return nil
	}
	ids := make(map[string]bool, len(ev.AuthEvents))
	for _, id := range ev.AuthEvents {
		if ids[id] {
			return reject("auth_events.duplicate", "auth_events lists "+quote(id)+" twice")
		}
		ids[id] = true
	}
	seenID := make(map[string]bool, len(authEvents))
	seenKey := make(map[StateKey]bool, len(authEvents))
	needed := Needed(rv, ev.Type, ev.StateKey, ev.Sender, ev.Content)
	hasCreate := false
	for _, ae := range authEvents {
		if !ids[ae.EventID] || seenID[ae.EventID] {
			return reject("auth_events.mismatch", "auth event "+quote(ae.EventID)+" is not named once in auth_events")
		}
		seenID[ae.EventID] = true
		if ae.StateKey == nil {
			return reject("auth_events.unexpected", "auth event "+quote(ae.EventID)+" is not a state event")
		}
		k := StateKey{ae.Type, *ae.StateKey}
		// "If there are duplicate entries for a given type and state_key
		// pair, reject."
		if seenKey[k] {
			return reject("auth_events.duplicate", "duplicate auth event for ("+k.Type+", "+quote(k.StateKey)+")")
		}
		seenKey[k] = true
		// "If there are entries whose type and state_key don't match those
		// specified by the auth events selection algorithm, reject." (In
		// v12 this includes any m.room.create.)
		if !containsKey(needed, k) {
			return reject("auth_events.unexpected", "auth event ("+k.Type+", "+quote(k.StateKey)+") is not one the event may cite")
		}
		if k.Type == TypeCreate {
			hasCreate = true
		}
		// "If any event in auth_events has a room_id which does not match
		// that of the event being authorised, reject."
		if ae.RoomID != ev.RoomID {
			return reject("auth_events.room_id", "auth event "+quote(ae.EventID)+" is from another room")
		}
	}
	if len(seenID) != len(ids) {
		return reject("auth_events.missing", "some auth_events are unknown or were rejected")
	}
	if !rv.RoomIDFromCreateEvent && !hasCreate {
		return reject("auth_events.no_create", "auth_events has no m.room.create")
	}
	return nil
}

func containsKey(ks []StateKey, k StateKey) bool {
	for _, e := range ks {
		if e == k {
			return true
		}
	}
	return false
}

// AuthEventsState returns the auth state given by a list of auth events.
// From v12 the m.room.create event is never among them and must be passed as
// create (the event whose ID, with sigil '!', is the room ID); before v12,
// create is ignored.
func AuthEventsState(rv *event.RoomVersion, authEvents []*event.PDU, create *event.PDU) StateMap {
	m := make(StateMap, len(authEvents)+1)
	for _, ae := range authEvents {
		if ae.StateKey != nil {
			m[StateKey{ae.Type, *ae.StateKey}] = ae
		}
	}
	if rv != nil && rv.RoomIDFromCreateEvent && create != nil {
		m[StateKey{TypeCreate, ""}] = create
	}
	return m
}

// CheckAgainstAuthEvents authorises ev against its own auth events, as
// servers do on receipt of a PDU (Server-Server API, "Checks performed on
// receipt of a PDU", step 4): CheckAuthEvents, then CheckWith on the state
// the auth events form. create is needed from v12 (see AuthEventsState).
func CheckAgainstAuthEvents(ev *event.PDU, authEvents []*event.PDU, create *event.PDU, v Verifier) error {
	if err := CheckAuthEvents(ev, authEvents); err != nil {
		return err
	}
	return CheckWith(ev, AuthEventsState(ev.Version, authEvents, create), v)
}

// CanApplyRedaction implements "Handling redactions" (room versions 3+): a
// redaction that passed the auth rules is applied if the redaction's sender
// has at least the redact level, or is on the same server as the sender of
// the redacted event. (Redacting one's own events is the second case.)
func CanApplyRedaction(pl *PowerLevels, redactionSender, originalSender string) bool {
	if pl.UserLevel(redactionSender) >= pl.Redact() {
		return true
	}
	d := domainOf(redactionSender)
	return d != "" && d == domainOf(originalSender)
}
