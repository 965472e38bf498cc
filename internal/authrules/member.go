package authrules

import (
	"conclave/internal/event"
)

const keyAuthorisedVia = "join_authorised_via_users_server"

// checkMember implements the m.room.member rule ("If type is m.room.member").
func checkMember(rv *event.RoomVersion, ev *event.PDU, state StateGetter, create *event.PDU, ls *levelSource, v Verifier) error {
	// "If there is no state_key property, or no membership property in
	// content, reject."
	if ev.StateKey == nil {
		return reject("member.no_state_key", "m.room.member has no state_key")
	}
	rawMembership, found, err := lookup(ev.Content, "membership")
	if err != nil {
		return reject("member.content", "content is not a JSON object")
	}
	if !found {
		return reject("member.no_membership", "content has no membership")
	}
	membership, err := internString(rawMembership, "membership")
	if err != nil {
		return reject("member.unknown", "membership is not a string")
	}
	target := *ev.StateKey

	// v8+: "If content has a join_authorised_via_users_server key: If the
	// event is not validly signed by the homeserver of the user ID denoted
	// by the key, reject." This applies whatever the membership.
	var authVia string
	if rv.RestrictedJoins {
		if raw, found, _ := lookup(ev.Content, keyAuthorisedVia); found {
			s, ok := stringValue(raw)
			if !ok || !validUserID(s) {
				return reject("member.authorised_via.signature", keyAuthorisedVia+" is not a user ID")
			}
			if v == nil || !v.EventSignedBy(ev, domainOf(s)) {
				return reject("member.authorised_via.signature", "event is not signed by the server of "+keyAuthorisedVia)
			}
			authVia = s
		}
	}

	switch membership {
	case MembershipJoin:
		return checkJoin(rv, ev, state, create, ls, target, authVia)
	case MembershipInvite:
		return checkInvite(ev, state, ls, target, v)
	case MembershipLeave:
		return checkLeave(rv, ev, state, ls, target)
	case MembershipBan:
		return checkBan(ev, state, ls, target)
	case MembershipKnock:
		if rv.Knocking {
			return checkKnock(rv, ev, state, target)
		}
	}
	// "Otherwise, the membership is unknown. Reject." (knock before v7)
	return reject("member.unknown", "unknown membership "+quote(membership))
}

func joinRuleIn(state StateGetter) string {
	jr, err := JoinRule(state.StateEvent(TypeJoinRules, ""))
	if err != nil {
		return "" // a malformed join rule matches none of the rules' cases
	}
	return jr
}

func checkJoin(rv *event.RoomVersion, ev *event.PDU, state StateGetter, create *event.PDU, ls *levelSource, target, authVia string) error {
	// "If the only previous event is an m.room.create and the state_key is
	// the creator, allow." Note that the rule does not compare the sender.
	if len(ev.PrevEvents) == 1 && create.EventID != "" && ev.PrevEvents[0] == create.EventID &&
		firstJoinCreator(rv, create, target) {
		return nil
	}
	if ev.Sender != target {
		return reject("member.join.sender", "sender does not match state_key")
	}
	current := membershipIn(state, target)
	if current == MembershipBan {
		return reject("member.join.banned", "sender is banned")
	}
	jr := joinRuleIn(state)
	// "If the join_rule is invite or knock (v7+) then allow if membership
	// state is invite or join."
	if jr == JoinRuleInvite || (rv.Knocking && jr == JoinRuleKnock) {
		if current == MembershipInvite || current == MembershipJoin {
			return nil
		}
		return reject("member.join.not_invited", "join rule is "+jr+" and the user is not invited")
	}
	// v8+ restricted, v10+ also knock_restricted.
	if (rv.RestrictedJoins && jr == JoinRuleRestricted) || (rv.KnockRestricted && jr == JoinRuleKnockRestricted) {
		if current == MembershipInvite || current == MembershipJoin {
			return nil
		}
		// "If the join_authorised_via_users_server key in content is not a
		// user with sufficient permission to invite other users or is not a
		// joined member of the room, reject."
		if authVia == "" {
			return reject("member.join.restricted", "restricted join without "+keyAuthorisedVia)
		}
		if membershipIn(state, authVia) != MembershipJoin {
			return reject("member.join.restricted", "authorising user is not joined")
		}
		level, err := ls.userLevel(authVia)
		if err != nil {
			return err
		}
		invite, err := ls.named(keyInvite)
		if err != nil {
			return err
		}
		if level < invite {
			return reject("member.join.restricted", "authorising user cannot invite")
		}
		return nil
	}
	if jr == JoinRulePublic {
		return nil
	}
	// Includes a room without m.room.join_rules: the rules name no default.
	return reject("member.join.rule", "join rule "+quote(jr)+" does not allow joining")
}

func checkInvite(ev *event.PDU, state StateGetter, ls *levelSource, target string, v Verifier) error {
	if tpi, found, _ := lookup(ev.Content, "third_party_invite"); found {
		return checkThirdPartyInvite(ev, state, target, tpi, v)
	}
	if membershipIn(state, ev.Sender) != MembershipJoin {
		return reject("member.invite.sender_not_joined", "sender is not joined")
	}
	if m := membershipIn(state, target); m == MembershipJoin || m == MembershipBan {
		return reject("member.invite.target", "target is already "+m)
	}
	senderLevel, err := ls.userLevel(ev.Sender)
	if err != nil {
		return err
	}
	invite, err := ls.named(keyInvite)
	if err != nil {
		return err
	}
	if senderLevel < invite {
		return reject("member.invite.power", "sender's power level is below the invite level")
	}
	return nil
}

// checkThirdPartyInvite implements "If content has a third_party_invite
// property". Note the rules do not require the sender to be joined here: the
// sender must instead have sent the m.room.third_party_invite event.
func checkThirdPartyInvite(ev *event.PDU, state StateGetter, target string, tpi []byte, v Verifier) error {
	if membershipIn(state, target) == MembershipBan {
		return reject("member.third_party.banned", "target is banned")
	}
	var signed []byte
	if isObject(tpi) {
		if raw, found, err := lookup(tpi, "signed"); err == nil && found {
			signed = raw
		}
	}
	if signed == nil {
		return reject("member.third_party.signed", "third_party_invite has no signed property")
	}
	var mxid, token []byte
	if isObject(signed) {
		mxid, _, _ = lookup(signed, "mxid")
		token, _, _ = lookup(signed, "token")
	}
	if mxid == nil || token == nil {
		return reject("member.third_party.signed", "signed has no mxid or token")
	}
	if !rawEquals(mxid, target) {
		return reject("member.third_party.mxid", "signed.mxid does not match state_key")
	}
	tok, ok := stringValue(token)
	var invite *event.PDU
	if ok {
		invite = state.StateEvent(TypeThirdPartyInvite, tok)
	}
	if invite == nil {
		return reject("member.third_party.no_invite", "no m.room.third_party_invite with state_key matching the token")
	}
	if invite.Sender != ev.Sender {
		return reject("member.third_party.sender", "sender did not send the m.room.third_party_invite")
	}
	keys := thirdPartyPublicKeys(invite.Content)
	if len(keys) > 0 && v != nil && v.ThirdPartyInviteSigned(signed, keys) {
		return nil
	}
	return reject("member.third_party.signature", "no signature in signed matches a public key of the invite")
}

// thirdPartyPublicKeys collects content.public_key and each
// content.public_keys[].public_key of an m.room.third_party_invite.
func thirdPartyPublicKeys(content []byte) []string {
	var keys []string
	if raw, found, err := lookup(content, "public_key"); err == nil && found {
		if s, ok := stringValue(raw); ok {
			keys = append(keys, s)
		}
	}
	if raw, found, err := lookup(content, "public_keys"); err == nil && found {
		_ = forEachElement(raw, func(e []byte) bool {
			if isObject(e) {
				if k, found, err := lookup(e, "public_key"); err == nil && found {
					if s, ok := stringValue(k); ok {
						keys = append(keys, s)
					}
				}
			}
			return true
		})
	}
	return keys
}

func checkLeave(rv *event.RoomVersion, ev *event.PDU, state StateGetter, ls *levelSource, target string) error {
	if ev.Sender == target {
		// "allow if and only if that user's current membership state is
		// invite, join, or knock (v7+)."
		switch membershipIn(state, target) {
		case MembershipInvite, MembershipJoin:
			return nil
		case MembershipKnock:
			if rv.Knocking {
				return nil
			}
		}
		return reject("member.leave.self", "user is not invited, joined or knocking")
	}
	if membershipIn(state, ev.Sender) != MembershipJoin {
		return reject("member.leave.sender_not_joined", "sender is not joined")
	}
	senderLevel, err := ls.userLevel(ev.Sender)
	if err != nil {
		return err
	}
	if membershipIn(state, target) == MembershipBan {
		ban, err := ls.named(keyBan)
		if err != nil {
			return err
		}
		if senderLevel < ban {
			return reject("member.leave.unban_power", "sender's power level is below the ban level")
		}
	}
	kick, err := ls.named(keyKick)
	if err != nil {
		return err
	}
	targetLevel, err := ls.userLevel(target)
	if err != nil {
		return err
	}
	if senderLevel >= kick && targetLevel < senderLevel {
		return nil
	}
	return reject("member.leave.power", "sender cannot kick the target")
}

func checkBan(ev *event.PDU, state StateGetter, ls *levelSource, target string) error {
	if membershipIn(state, ev.Sender) != MembershipJoin {
		return reject("member.ban.sender_not_joined", "sender is not joined")
	}
	senderLevel, err := ls.userLevel(ev.Sender)
	if err != nil {
		return err
	}
	ban, err := ls.named(keyBan)
	if err != nil {
		return err
	}
	targetLevel, err := ls.userLevel(target)
	if err != nil {
		return err
	}
	if senderLevel >= ban && targetLevel < senderLevel {
		return nil
	}
	return reject("member.ban.power", "sender cannot ban the target")
}

func checkKnock(rv *event.RoomVersion, ev *event.PDU, state StateGetter, target string) error {
	jr := joinRuleIn(state)
	if jr != JoinRuleKnock && !(rv.KnockRestricted && jr == JoinRuleKnockRestricted) {
		return reject("member.knock.rule", "join rule does not allow knocking")
	}
	if ev.Sender != target {
		return reject("member.knock.sender", "sender does not match state_key")
	}
	switch membershipIn(state, target) {
	case MembershipBan, MembershipInvite, MembershipJoin:
		return reject("member.knock.state", "user is banned, invited or joined")
	}
	return nil
}
