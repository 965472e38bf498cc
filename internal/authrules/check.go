package authrules

import (
	"encoding/json"
	"fmt"

	"conclave/internal/event"
	"conclave/internal/matrix"
)

// StateGetter returns the state event for (type, state_key) among the auth
// state, or nil. The auth state is either the events an event cites as
// auth_events, or — when this server creates an event — the room's current
// state (from which the cited auth events are chosen).
type StateGetter interface {
	StateEvent(eventType, stateKey string) *event.PDU
}

// Error says which authorisation rule refused an event.
type Error struct{ Rule, Msg string }

func (e *Error) Error() string { return e.Msg + " (auth rule " + e.Rule + ")" }

func deny(rule, format string, args ...any) error {
	return &Error{Rule: rule, Msg: fmt.Sprintf(format, args...)}
}

// Check applies the authorisation rules of ev's room version to ev, given
// the auth state. Rule numbers in errors follow the room version 11/12 spec.
func Check(ev *event.PDU, state StateGetter) error {
	rv := ev.Version
	if rv == nil {
		return deny("0", "event has no room version")
	}
	if ev.Type == "m.room.create" {
		return checkCreate(ev)
	}
	create := state.StateEvent("m.room.create", "")
	if create == nil {
		return deny("2", "no m.room.create event in the auth state")
	}
	// m.federate false keeps other servers out.
	var cc struct {
		Federate *bool `json:"m.federate"`
	}
	json.Unmarshal(create.Content, &cc)
	if cc.Federate != nil && !*cc.Federate && matrix.ServerOf(ev.Sender) != matrix.ServerOf(create.Sender) {
		return deny("3", "room is not federated")
	}
	if rv.SpecialCaseAliasesAuth && ev.Type == "m.room.aliases" {
		if ev.StateKey == nil {
			return deny("4.1", "m.room.aliases needs a state_key")
		}
		if *ev.StateKey != matrix.ServerOf(ev.Sender) {
			return deny("4.2", "m.room.aliases state_key must be the sender's server")
		}
		return nil
	}
	pl, err := ParsePowerLevels(rv, contentOf(state.StateEvent("m.room.power_levels", "")), create)
	if err != nil {
		return deny("10", "current power levels are invalid: %v", err)
	}
	if ev.Type == "m.room.member" {
		return checkMember(ev, state, create, pl)
	}
	if membershipOf(state, ev.Sender) != "join" {
		return deny("6", "%s is not joined to the room", ev.Sender)
	}
	if ev.Type == "m.room.third_party_invite" {
		if pl.UserLevel(ev.Sender) < pl.InviteLevel {
			return deny("7", "%s may not invite", ev.Sender)
		}
		return nil
	}
	if need := pl.EventLevel(ev.Type, ev.IsState()); pl.UserLevel(ev.Sender) < need {
		return deny("8", "%s needs power level %d to send %s", ev.Sender, need, ev.Type)
	}
	if ev.StateKey != nil && len(*ev.StateKey) > 0 && (*ev.StateKey)[0] == '@' && *ev.StateKey != ev.Sender {
		return deny("9", "state_key %s belongs to another user", *ev.StateKey)
	}
	if ev.Type == "m.room.power_levels" {
		return checkPowerLevels(ev, state, create, pl)
	}
	// Room versions 1 and 2 checked redactions here; later versions check
	// them when serving (the room service refuses unauthorised ones at
	// creation too).
	return nil
}

func contentOf(e *event.PDU) json.RawMessage {
	if e == nil {
		return nil
	}
	return e.Content
}

func checkCreate(ev *event.PDU) error {
	rv := ev.Version
	if len(ev.PrevEvents) > 0 {
		return deny("1.1", "m.room.create must have no prev_events")
	}
	if rv.RoomIDFromCreateEvent {
		if ev.RoomID != "" {
			return deny("1.2", "m.room.create must not have a room_id in this room version")
		}
	} else if matrix.ServerOf(ev.RoomID) != matrix.ServerOf(ev.Sender) {
		return deny("1.2", "room ID and sender are on different servers")
	}
	var c struct {
		RoomVersion        *json.RawMessage `json:"room_version"`
		Creator            *json.RawMessage `json:"creator"`
		AdditionalCreators *json.RawMessage `json:"additional_creators"`
	}
	if err := json.Unmarshal(ev.Content, &c); err != nil {
		return deny("1", "m.room.create content is not an object")
	}
	if c.RoomVersion != nil {
		var v string
		if json.Unmarshal(*c.RoomVersion, &v) != nil {
			return deny("1.3", "room_version must be a string")
		}
		if _, ok := event.GetRoomVersion(v); !ok {
			return deny("1.3", "unknown room version %q", v)
		}
	}
	if !rv.CreatorIsSender && c.Creator == nil {
		return deny("1.4", "m.room.create needs a creator")
	}
	if rv.PrivilegedCreators && c.AdditionalCreators != nil {
		var extra []string
		if json.Unmarshal(*c.AdditionalCreators, &extra) != nil {
			return deny("1.4", "additional_creators must be an array of user IDs")
		}
		for _, u := range extra {
			if !matrix.ValidUserID(u) {
				return deny("1.4", "additional_creators has an invalid user ID %q", u)
			}
		}
	}
	return nil
}

func membershipOf(state StateGetter, userID string) string {
	m, _ := Membership(state.StateEvent("m.room.member", userID))
	return m
}

// Membership reads content.membership of a member event ("" for nil).
func Membership(ev *event.PDU) (string, error) {
	if ev == nil {
		return "", nil
	}
	var c struct {
		Membership *string `json:"membership"`
	}
	if err := json.Unmarshal(ev.Content, &c); err != nil || c.Membership == nil {
		return "", fmt.Errorf("member event without a membership string")
	}
	return *c.Membership, nil
}

// JoinRule reads content.join_rule of an m.room.join_rules event ("" for nil).
func JoinRule(ev *event.PDU) string {
	if ev == nil {
		return ""
	}
	var c struct {
		JoinRule string `json:"join_rule"`
	}
	json.Unmarshal(ev.Content, &c)
	return c.JoinRule
}

type memberContent struct {
	Membership       *string         `json:"membership"`
	AuthorisedVia    *string         `json:"join_authorised_via_users_server"`
	ThirdPartyInvite json.RawMessage `json:"third_party_invite"`
}

func checkMember(ev *event.PDU, state StateGetter, create *event.PDU, pl *PowerLevels) error {
	rv := ev.Version
	if ev.StateKey == nil {
		return deny("5.1", "m.room.member needs a state_key")
	}
	var c memberContent
	if err := json.Unmarshal(ev.Content, &c); err != nil || c.Membership == nil {
		return deny("5.1", "m.room.member needs a membership string")
	}
	target := *ev.StateKey
	if !matrix.ValidUserID(target) {
		return deny("5.1", "state_key %q is not a user ID", target)
	}
	sender := ev.Sender
	senderM := membershipOf(state, sender)
	targetM := membershipOf(state, target)
	joinRule := JoinRule(state.StateEvent("m.room.join_rules", ""))
	senderLevel := pl.UserLevel(sender)
	targetLevel := pl.UserLevel(target)

	switch *c.Membership {
	case "join":
		// The creator's own first join, right after the create event.
		if len(ev.PrevEvents) == 1 && ev.PrevEvents[0] == create.EventID && sender == target && isCreator(create, target) {
			return nil
		}
		if sender != target {
			return deny("5.3.2", "%s cannot join on behalf of %s", sender, target)
		}
		if targetM == "ban" {
			return deny("5.3.3", "%s is banned", target)
		}
		switch {
		case joinRule == "invite" || (rv.Knocking && joinRule == "knock"):
			if targetM == "invite" || targetM == "join" {
				return nil
			}
			return deny("5.3.4", "room is invite-only")
		case (rv.RestrictedJoins && joinRule == "restricted") || (rv.KnockRestricted && joinRule == "knock_restricted"):
			if targetM == "invite" || targetM == "join" {
				return nil
			}
			if c.AuthorisedVia == nil {
				return deny("5.3.5", "restricted room needs join_authorised_via_users_server")
			}
			via := *c.AuthorisedVia
			if membershipOf(state, via) != "join" || pl.UserLevel(via) < pl.InviteLevel {
				return deny("5.3.5", "%s cannot authorise joins", via)
			}
			return nil
		case joinRule == "public":
			return nil
		}
		return deny("5.3.7", "room join rule %q does not allow joining", joinRule)

	case "invite":
		if len(c.ThirdPartyInvite) > 0 && !isNull(c.ThirdPartyInvite) {
			return checkThirdPartyInvite(ev, state, c.ThirdPartyInvite, targetM)
		}
		if senderM != "join" {
			return deny("5.4.2", "%s is not joined", sender)
		}
		if targetM == "join" || targetM == "ban" {
			return deny("5.4.3", "%s is already %sed", target, map[string]string{"join": "join", "ban": "bann"}[targetM])
		}
		if senderLevel >= pl.InviteLevel {
			return nil
		}
		return deny("5.4.4", "%s may not invite", sender)

	case "leave":
		if sender == target {
			if targetM == "invite" || targetM == "join" || (rv.Knocking && targetM == "knock") {
				return nil
			}
			return deny("5.5.1", "%s is not in the room", sender)
		}
		if senderM != "join" {
			return deny("5.5.2", "%s is not joined", sender)
		}
		if targetM == "ban" && senderLevel < pl.BanLevel {
			return deny("5.5.3", "%s may not unban", sender)
		}
		if senderLevel >= pl.KickLevel && targetLevel < senderLevel {
			return nil
		}
		return deny("5.5.4", "%s may not kick %s", sender, target)

	case "ban":
		if senderM != "join" {
			return deny("5.6.1", "%s is not joined", sender)
		}
		if senderLevel >= pl.BanLevel && targetLevel < senderLevel {
			return nil
		}
		return deny("5.6.2", "%s may not ban %s", sender, target)

	case "knock":
		if !rv.Knocking {
			break
		}
		if joinRule != "knock" && !(rv.KnockRestricted && joinRule == "knock_restricted") {
			return deny("5.7.1", "room does not allow knocking")
		}
		if sender != target {
			return deny("5.7.2", "%s cannot knock for %s", sender, target)
		}
		if targetM != "ban" && targetM != "invite" && targetM != "join" {
			return nil
		}
		return deny("5.7.3", "%s cannot knock while %s", sender, targetM)
	}
	return deny("5.8", "unknown membership %q", *c.Membership)
}

func isCreator(create *event.PDU, user string) bool {
	for _, c := range Creators(create) {
		if c == user {
			return true
		}
	}
	return false
}

// checkThirdPartyInvite applies rule 5.4.1. The signature over the signed
// block is checked by the caller (it needs key lookups); here the shape,
// the token and the inviter are checked.
func checkThirdPartyInvite(ev *event.PDU, state StateGetter, tpi json.RawMessage, targetM string) error {
	if targetM == "ban" {
		return deny("5.4.1.1", "target is banned")
	}
	var t struct {
		Signed *struct {
			MXID       string          `json:"mxid"`
			Token      string          `json:"token"`
			Signatures json.RawMessage `json:"signatures"`
		} `json:"signed"`
	}
	if json.Unmarshal(tpi, &t) != nil || t.Signed == nil || t.Signed.Token == "" || len(t.Signed.Signatures) == 0 {
		return deny("5.4.1.2", "third_party_invite needs a signed block with mxid, token and signatures")
	}
	if t.Signed.MXID != *ev.StateKey {
		return deny("5.4.1.3", "signed mxid does not match state_key")
	}
	inv := state.StateEvent("m.room.third_party_invite", t.Signed.Token)
	if inv == nil {
		return deny("5.4.1.4", "no m.room.third_party_invite for that token")
	}
	if inv.Sender != ev.Sender {
		return deny("5.4.1.5", "the third-party invite was sent by someone else")
	}
	return nil
}

// levelKeys are the top-level power level keys whose changes rule 10 checks.
var levelKeys = []string{"users_default", "events_default", "state_default", "ban", "redact", "kick", "invite"}

func checkPowerLevels(ev *event.PDU, state StateGetter, create *event.PDU, cur *PowerLevels) error {
	rv := ev.Version
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(ev.Content, &raw); err != nil {
		return deny("10", "power levels content must be an object")
	}
	// Shapes (10.1–10.3): integers where integers go, user IDs as user keys.
	for _, k := range levelKeys {
		if v, ok := raw[k]; ok {
			if _, err := parseLevel(rv, v); err != nil {
				return deny("10.1", "%s must be an integer", k)
			}
		}
	}
	for _, k := range []string{"events", "notifications", "users"} {
		v, ok := raw[k]
		if !ok {
			continue
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(v, &obj) != nil || obj == nil {
			return deny("10.2", "%s must be an object", k)
		}
		for key, lv := range obj {
			if _, err := parseLevel(rv, lv); err != nil {
				return deny("10.2", "%s values must be integers", k)
			}
			if k == "users" && !matrix.ValidUserID(key) {
				return deny("10.3", "users key %q is not a user ID", key)
			}
		}
	}
	next, err := ParsePowerLevels(rv, ev.Content, create)
	if err != nil {
		return deny("10.3", "%v", err)
	}
	if rv.PrivilegedCreators {
		for _, c := range Creators(create) {
			if _, ok := next.Users[c]; ok {
				return deny("10.4", "creators may not be listed in users")
			}
		}
	}
	prev := state.StateEvent("m.room.power_levels", "")
	if prev == nil {
		return nil
	}
	sender := ev.Sender
	senderLevel := cur.UserLevel(sender)
	old := map[string]int64{"users_default": cur.UsersDefault, "events_default": cur.EventsDefault, "state_default": cur.StateDefault,
		"ban": cur.BanLevel, "redact": cur.RedactLevel, "kick": cur.KickLevel, "invite": cur.InviteLevel}
	var prevRaw map[string]json.RawMessage
	json.Unmarshal(prev.Content, &prevRaw)
	for _, k := range levelKeys {
		_, hadOld := prevRaw[k]
		_, hasNew := raw[k]
		if !hadOld && !hasNew {
			continue
		}
		o := old[k]
		n := map[string]int64{"users_default": next.UsersDefault, "events_default": next.EventsDefault, "state_default": next.StateDefault,
			"ban": next.BanLevel, "redact": next.RedactLevel, "kick": next.KickLevel, "invite": next.InviteLevel}[k]
		if hadOld == hasNew && o == n {
			continue
		}
		if hadOld && o > senderLevel {
			return deny("10.6.1", "%s: current level %d is above yours", k, o)
		}
		if hasNew && n > senderLevel {
			return deny("10.6.2", "%s: new level %d is above yours", k, n)
		}
	}
	maps := []struct {
		name     string
		old, new map[string]int64
	}{{"events", levelsOf(prevRaw, rv, "events"), levelsOf(raw, rv, "events")}}
	if rv.NotificationsPowerLevels {
		maps = append(maps, struct {
			name     string
			old, new map[string]int64
		}{"notifications", levelsOf(prevRaw, rv, "notifications"), levelsOf(raw, rv, "notifications")})
	}
	for _, m := range maps {
		for k, o := range m.old {
			if n, ok := m.new[k]; ok && n == o {
				continue
			}
			if o > senderLevel {
				return deny("10.7", "%s.%s: current level %d is above yours", m.name, k, o)
			}
		}
		for k, n := range m.new {
			if o, ok := m.old[k]; ok && o == n {
				continue
			}
			if n > senderLevel {
				return deny("10.8", "%s.%s: new level %d is above yours", m.name, k, n)
			}
		}
	}
	oldUsers, newUsers := levelsOf(prevRaw, rv, "users"), levelsOf(raw, rv, "users")
	for u, o := range oldUsers {
		if n, ok := newUsers[u]; ok && n == o {
			continue
		}
		if u != sender && o >= senderLevel {
			return deny("10.9", "%s's level %d is not below yours", u, o)
		}
	}
	for u, n := range newUsers {
		if o, ok := oldUsers[u]; ok && o == n {
			continue
		}
		if n > senderLevel {
			return deny("10.10", "new level %d for %s is above yours", n, u)
		}
	}
	return nil
}

// levelsOf parses one map of levels (already validated or tolerated).
func levelsOf(raw map[string]json.RawMessage, rv *event.RoomVersion, key string) map[string]int64 {
	out := map[string]int64{}
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw[key], &obj) != nil {
		return out
	}
	for k, v := range obj {
		if n, err := parseLevel(rv, v); err == nil {
			out[k] = n
		}
	}
	return out
}
