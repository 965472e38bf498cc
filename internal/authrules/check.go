package authrules

import (
	"encoding/json"
	"strings"

	"conclave/internal/event"
)

// Verifier performs the two signature checks the rules require but that need
// canonical JSON and keys, which this package does not own. A nil Verifier
// makes both checks fail, so the events depending on them are rejected:
// failing closed is the only safe default for an authorisation decision.
type Verifier interface {
	// EventSignedBy reports whether ev carries a valid signature from the
	// server serverName. Used for join_authorised_via_users_server (v8+):
	// "If the event is not validly signed by the homeserver of the user ID
	// denoted by the key, reject."
	EventSignedBy(ev *event.PDU, serverName string) bool
	// ThirdPartyInviteSigned reports whether any signature in signed (the
	// content.third_party_invite.signed object of an invite) verifies under
	// any of publicKeys (the unpadded-base64 ed25519 keys from the
	// m.room.third_party_invite event's public_key and public_keys).
	ThirdPartyInviteSigned(signed json.RawMessage, publicKeys []string) bool
}

// Check applies the authorisation rules of ev.Version to ev, given the auth
// state, without a Verifier (see CheckWith). It returns nil if the event is
// allowed and an *Error naming the failed rule otherwise.
//
// The rules about the auth_events list itself (duplicates, unexpected
// entries, missing m.room.create, room_id mismatches) need the list, not a
// state: see CheckAuthEvents and CheckAgainstAuthEvents.
func Check(ev *event.PDU, state StateGetter) error { return CheckWith(ev, state, nil) }

// CheckWith is Check with a Verifier for the signature-dependent rules.
func CheckWith(ev *event.PDU, state StateGetter, v Verifier) error {
	rv := ev.Version
	if rv == nil {
		return reject("version", "event has no room version")
	}
	// Rule 1: m.room.create is decided on its own.
	if ev.Type == TypeCreate {
		return checkCreate(rv, ev)
	}
	create := state.StateEvent(TypeCreate, "")
	if create == nil {
		// v1–v11 rule 2.4 ("If there is no m.room.create event among the
		// entries, reject"); in v12 the create event is implied by room_id
		// and must still be known (rule 2).
		return reject("create.missing", "no m.room.create event in the auth state")
	}
	if rv.RoomIDFromCreateEvent {
		// v12 rule 2: "If the event's room_id is not an event ID for an
		// accepted (not rejected) m.room.create event, with the sigil !
		// instead of $, reject."
		id := create.EventID
		if len(id) < 2 || id[0] != '$' || len(ev.RoomID) != len(id) || ev.RoomID[0] != '!' || ev.RoomID[1:] != id[1:] {
			return reject("room_id.create", "room_id is not the m.room.create event ID with sigil '!'")
		}
	}
	// "If the content of the m.room.create event in the room state has the
	// property m.federate set to false, and the sender domain of the event
	// does not match the sender domain of the create event, reject."
	if !federates(create) && domainOf(ev.Sender) != domainOf(create.Sender) {
		return reject("federate", "room is not federated and the sender is on another server")
	}
	// v1–v5 only: m.room.aliases is allowed for the server named by its
	// state_key, regardless of membership or power.
	if rv.SpecialCaseAliasesAuth && ev.Type == TypeAliases {
		if ev.StateKey == nil {
			return reject("aliases.no_state_key", "m.room.aliases has no state_key")
		}
		if domainOf(ev.Sender) != *ev.StateKey {
			return reject("aliases.domain", "sender's domain does not match the state_key")
		}
		return nil
	}
	ls := newLevelSource(rv, state, create)
	if ev.Type == TypeMember {
		return checkMember(rv, ev, state, create, &ls, v)
	}
	// "If the sender's current membership state is not join, reject."
	if membershipIn(state, ev.Sender) != MembershipJoin {
		return reject("sender.not_joined", "sender is not joined to the room")
	}
	senderLevel, err := ls.userLevel(ev.Sender)
	if err != nil {
		return err
	}
	if ev.Type == TypeThirdPartyInvite {
		// "Allow if and only if sender's current power level is greater
		// than or equal to the invite level."
		invite, err := ls.named(keyInvite)
		if err != nil {
			return err
		}
		if senderLevel < invite {
			return reject("third_party_invite.power", "sender's power level is below the invite level")
		}
		return nil
	}
	// "If the event type's required power level is greater than the
	// sender's power level, reject."
	required, err := ls.eventLevel(ev.Type, ev.IsState())
	if err != nil {
		return err
	}
	if required > senderLevel {
		return reject("event.power", "sender's power level is below the level required for "+ev.Type)
	}
	// "If the event has a state_key that starts with an @ and does not
	// match the sender, reject."
	if ev.StateKey != nil && strings.HasPrefix(*ev.StateKey, "@") && *ev.StateKey != ev.Sender {
		return reject("state_key.user", "state_key starts with '@' and is not the sender")
	}
	// The rule is keyed on the type alone, as the spec words it, so it also
	// applies to a (meaningless) power levels event with another state_key.
	if ev.Type == TypePowerLevels {
		return checkPowerLevels(rv, ev, state, create, &ls, senderLevel)
	}
	// Room versions 1 and 2 only: the redaction rule. Those are exactly the
	// versions whose event IDs carry a domain (EventIDFormat 1), which the
	// rule compares; from v3 redactions pass the auth rules like any other
	// event and the redact level is applied when serving ("Handling
	// redactions", see CanApplyRedaction).
	if ev.Type == TypeRedaction && rv.EventIDFormat == 1 {
		redact, err := ls.named(keyRedact)
		if err != nil {
			return err
		}
		if senderLevel >= redact {
			return nil
		}
		if d := domainOf(ev.Redacts); d != "" && d == domainOf(ev.EventID) {
			return nil
		}
		return reject("redaction.power", "sender is below the redact level and the redacted event is from another server")
	}
	return nil
}

// checkCreate implements rule 1, "If type is m.room.create".
func checkCreate(rv *event.RoomVersion, ev *event.PDU) error {
	if len(ev.PrevEvents) > 0 {
		return reject("create.prev_events", "m.room.create has prev_events")
	}
	if rv.RoomIDFromCreateEvent {
		// v12: the room ID is derived from the create event, which
		// therefore carries none.
		if ev.RoomID != "" {
			return reject("create.room_id", "m.room.create has a room_id")
		}
	} else if d := domainOf(ev.RoomID); d == "" || d != domainOf(ev.Sender) {
		return reject("create.room_id", "room_id domain does not match the sender's domain")
	}
	if _, _, err := lookup(ev.Content, "room_version"); err != nil {
		return reject("create.content", "content is not a JSON object")
	}
	if raw, found, _ := lookup(ev.Content, "room_version"); found {
		s, ok := stringValue(raw)
		if !ok {
			return reject("create.room_version", "room_version is not a string")
		}
		if _, known := event.GetRoomVersion(s); !known {
			return reject("create.room_version", "room_version "+quote(s)+" is not recognised")
		}
	}
	if rv.PrivilegedCreators {
		// v12 rule 1.4: additional_creators, when present, must be an
		// array of valid user IDs.
		if raw, found, _ := lookup(ev.Content, "additional_creators"); found {
			ok := true
			if err := forEachElement(raw, func(e []byte) bool {
				s, isStr := stringValue(e)
				ok = isStr && validUserID(s)
				return ok
			}); err != nil || !ok {
				return reject("create.additional_creators", "additional_creators is not an array of valid user IDs")
			}
		}
	}
	if !rv.CreatorIsSender {
		// v1–v10: "If content has no creator property, reject."
		if _, found, _ := lookup(ev.Content, "creator"); !found {
			return reject("create.creator", "content has no creator")
		}
	}
	return nil
}

// firstJoinCreator reports whether userID is the creator the first-join
// shortcut refers to: content.creator before v11, the create event's sender
// from v11 (v12 keeps "the sender of the m.room.create", so additional
// creators do not qualify).
func firstJoinCreator(rv *event.RoomVersion, create *event.PDU, userID string) bool {
	if rv.CreatorIsSender {
		return create.Sender == userID
	}
	raw, found, err := lookup(create.Content, "creator")
	return err == nil && found && rawEquals(raw, userID)
}
