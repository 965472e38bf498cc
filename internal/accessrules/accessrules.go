// Package accessrules owns the room access rules of a state messenger
// (Tchap's im.vector.room.access_rules): which rooms may hold external users,
// which are one-to-one chats, and what each kind forbids. It decides only;
// the room writer (internal/room) asks it about every event, local or
// received, against the room's current state. It is pure: no I/O.
//
// The rules, as Tchap's Synapse module (tchapgouv/synapse-room-access-rules)
// applies them through Synapse's check_event_allowed and
// check_visibility_can_be_modified callbacks (docs/rules.md):
//   - restricted (also a room without the event): no external user may be
//     invited or join;
//   - unrestricted: externals may join only after an invite, users_default
//     stays 0 and no external is given a power level other than 0;
//   - direct: at most the two first members (or one member and one e-mail
//     invite); no name, topic or avatar; never a public join rule;
//   - the rule changes only from restricted to unrestricted, is set to
//     direct only in a room that fits it, and a room listed in the public
//     directory keeps restricted; only restricted rooms may be published.
package accessrules

import (
	"encoding/json"
	"strconv"
	"strings"

	"conclave/internal/event"
	"conclave/internal/matrix"
)

// EventType is the state event (state_key "") carrying a room's rule.
const EventType = "im.vector.room.access_rules"

// The rules.
const (
	Restricted   = "restricted"
	Unrestricted = "unrestricted"
	Direct       = "direct"
)

// Valid reports whether rule is one of the three rules.
func Valid(rule string) bool {
	return rule == Restricted || rule == Unrestricted || rule == Direct
}

// Tchap's errors: its module answers false and Synapse turns that into
// 403 M_FORBIDDEN "This event is not allowed in this context" (handlers/
// message.py); createRoom's refusals are 400 "Invalid access rule"; the
// directory's 403 "Not allowed to publish room" (handlers/directory.py) and,
// at createRoom, "Room visibility value not allowed." (handlers/room.py).

// ErrNotAllowed is the error for an event the rules refuse.
func ErrNotAllowed() error { return matrix.Forbidden("This event is not allowed in this context") }

// ErrInvalidRule is createRoom's answer to a rule that does not fit the
// request (Synapse answers 400 M_UNKNOWN; M_INVALID_PARAM says more and
// clients key on the status).
func ErrInvalidRule() error { return matrix.InvalidParam("Invalid access rule") }

// ErrNotPublishable is the directory's answer for a room that is not
// restricted.
func ErrNotPublishable() error { return matrix.Forbidden("Not allowed to publish room") }

// ErrVisibilityNotAllowed is createRoom's answer to visibility public in a
// room that is not restricted.
func ErrVisibilityNotAllowed() error { return matrix.Forbidden("Room visibility value not allowed.") }

// State is what the rules read of a room: its current state.
type State interface {
	StateEvent(typ, key string) *event.PDU
	// StateKeysOf lists the state keys of the state events of one type
	// holding a non-empty content (members ever in the room, 3PID invite
	// tokens not revoked). Asked only in direct rooms, which are small.
	StateKeysOf(typ string) []string
	// Published reports whether the room is listed in the public room
	// directory. Asked only about access rule changes.
	Published() bool
}

// Policy is a server's configuration of the rules.
type Policy struct {
	// ExternalServers are the servers whose users are externals: the
	// circle's external server(s). Until the e-mail domain map exists
	// (issue 12), who is external is told by server name.
	ExternalServers map[string]bool
	// DefaultRule is the rule of rooms created without one that are neither
	// direct nor public: restricted or unrestricted.
	DefaultRule string
}

// External reports whether userID is an external user.
func (p *Policy) External(userID string) bool {
	return p != nil && p.ExternalServers[matrix.ServerOf(userID)]
}

// RuleOf returns a room's rule: restricted when the room has no rule event
// or its rule is unknown, as Tchap's module reads it.
func RuleOf(st State) string {
	ev := st.StateEvent(EventType, "")
	if ev == nil {
		return Restricted
	}
	var c struct {
		Rule string `json:"rule"`
	}
	if json.Unmarshal(ev.Content, &c) != nil || !Valid(c.Rule) {
		return Restricted
	}
	return c.Rule
}

// CanPublish reports whether a room may be listed in the public directory:
// only restricted rooms may.
func CanPublish(st State) error {
	if RuleOf(st) != Restricted {
		return ErrNotPublishable()
	}
	return nil
}

// Check decides whether ev may enter a room whose current state is st.
// Only state events are concerned. nil: allowed.
func (p *Policy) Check(ev *event.PDU, st State) error {
	if ev.StateKey == nil {
		return nil
	}
	ok := true
	switch ev.Type {
	case EventType:
		ok = *ev.StateKey != "" || p.ruleChangeAllowed(ev, st)
	case "m.room.power_levels":
		ok = p.PowerLevelsAllowed(ev.Content, RuleOf(st))
	case "m.room.member", "m.room.third_party_invite":
		ok = p.membershipAllowed(ev, st)
	case "m.room.join_rules":
		ok = !(joinRuleOf(ev.Content) == "public" && RuleOf(st) == Direct)
	case "m.room.name", "m.room.topic", "m.room.avatar":
		ok = RuleOf(st) != Direct
	}
	if !ok {
		return ErrNotAllowed()
	}
	return nil
}

func (p *Policy) ruleChangeAllowed(ev *event.PDU, st State) bool {
	var c struct {
		Rule string `json:"rule"`
	}
	if json.Unmarshal(ev.Content, &c) != nil || !Valid(c.Rule) {
		return false
	}
	if c.Rule == Direct {
		members, tokens := st.StateKeysOf("m.room.member"), st.StateKeysOf("m.room.third_party_invite")
		if len(members) > 2 || len(tokens) > 1 {
			return false
		}
	}
	if c.Rule != Restricted && st.Published() {
		return false
	}
	if c.Rule == Direct && st.StateEvent("m.room.join_rules", "") != nil && joinRuleOf(st.StateEvent("m.room.join_rules", "").Content) == "public" {
		// A direct room is never public (the module checks it at
		// createRoom and on join rule changes; a room that had no rule
		// must not reach the same state the other way round).
		return false
	}
	prev := st.StateEvent(EventType, "")
	if prev == nil {
		// Setting a rule where there was none: any rule that fits.
		return true
	}
	cur := RuleOf(st)
	return cur == c.Rule || (cur == Restricted && c.Rule == Unrestricted)
}

func (p *Policy) membershipAllowed(ev *event.PDU, st State) bool {
	rule := RuleOf(st)
	if ev.Type == "m.room.member" {
		m := membershipOf(ev.Content)
		if m != "join" && m != "invite" {
			// Leaving, kicks, bans and knocks are never refused: an
			// external let in before the rules applied must be able to go.
			return true
		}
	}
	switch rule {
	case Unrestricted:
		if ev.Type == "m.room.member" && membershipOf(ev.Content) == "join" && p.External(*ev.StateKey) {
			cur := st.StateEvent("m.room.member", *ev.StateKey)
			m := ""
			if cur != nil {
				m = membershipOf(cur.Content)
			}
			return m == "invite" || m == "join"
		}
		return true
	case Direct:
		return directAllowed(ev, st)
	default:
		// 3PID invites are judged where the address is looked up, before
		// the event exists (an e-mail invite to an external's address is
		// the domain map's business).
		if ev.Type == "m.room.third_party_invite" {
			return true
		}
		return !p.External(*ev.StateKey)
	}
}

// directAllowed: a direct room holds its first two members, or one member
// and one e-mail invite, and no one else (the module's README, steps 0–4).
func directAllowed(ev *event.PDU, st State) bool {
	members := st.StateKeysOf("m.room.member")
	tokens := st.StateKeysOf("m.room.third_party_invite")
	if len(tokens) == 1 && ev.Type == "m.room.third_party_invite" {
		// Only a revocation (or repeat) of the invite in flight.
		return *ev.StateKey == tokens[0]
	}
	if len(members) >= 2 {
		if ev.Type == "m.room.third_party_invite" {
			return false
		}
		return contains(members, *ev.StateKey)
	}
	if len(members) == 1 && len(tokens) == 1 {
		var c struct {
			TPI struct {
				Signed struct {
					Token string `json:"token"`
				} `json:"signed"`
			} `json:"third_party_invite"`
		}
		json.Unmarshal(ev.Content, &c)
		return c.TPI.Signed.Token == tokens[0] || *ev.StateKey == members[0]
	}
	return true
}

// PowerLevelsAllowed reports whether power levels content obeys a rule: in
// unrestricted rooms users_default stays 0 and no external gets a level
// other than 0.
func (p *Policy) PowerLevelsAllowed(content json.RawMessage, rule string) bool {
	if rule != Unrestricted {
		return true
	}
	var c struct {
		UsersDefault json.RawMessage            `json:"users_default"`
		Users        map[string]json.RawMessage `json:"users"`
	}
	if json.Unmarshal(content, &c) != nil {
		return true // malformed power levels are the auth rules' business
	}
	if len(c.UsersDefault) > 0 {
		if n, ok := level(c.UsersDefault); !ok || n != 0 {
			return false
		}
	}
	for u, raw := range c.Users {
		if p.External(u) {
			if n, ok := level(raw); !ok || n != 0 {
				return false
			}
		}
	}
	return true
}

// CreateDefaults is what createRoom adds for the rules.
type CreateDefaults struct {
	// Rule is the rule of the new room; Add: the event must be added
	// (initial_state did not carry one).
	Rule string
	Add  bool
}

// ForCreate decides a new room's rule from the createRoom request: the rule
// initial_state gives (which must be valid and match is_direct), or direct
// for is_direct, restricted for public rooms, the configured default for
// the others. A direct room may not be public; a published room must be
// restricted. p must not be nil.
func (p *Policy) ForCreate(given json.RawMessage, hasGiven, isDirect, publicJoin, publish bool) (CreateDefaults, error) {
	var d CreateDefaults
	if hasGiven {
		var c struct {
			Rule string `json:"rule"`
		}
		if json.Unmarshal(given, &c) != nil || !Valid(c.Rule) || (c.Rule == Direct) != isDirect {
			return d, ErrInvalidRule()
		}
		d.Rule = c.Rule
	} else {
		// A server outside a circle with externals adds no event: a room
		// without one is restricted, which there changes nothing, and
		// rooms stay as clients and other servers expect them.
		d.Add = len(p.ExternalServers) > 0 || p.DefaultRule == Unrestricted
		switch {
		case isDirect:
			d.Rule = Direct
		case publicJoin || publish || p.DefaultRule == "":
			d.Rule = Restricted
		default:
			d.Rule = p.DefaultRule
		}
	}
	if d.Rule == Direct && publicJoin {
		return d, ErrInvalidRule()
	}
	if publish && d.Rule != Restricted {
		return d, ErrVisibilityNotAllowed()
	}
	return d, nil
}

func membershipOf(content json.RawMessage) string {
	var c struct {
		Membership string `json:"membership"`
	}
	json.Unmarshal(content, &c)
	return c.Membership
}

func joinRuleOf(content json.RawMessage) string {
	var c struct {
		JoinRule string `json:"join_rule"`
	}
	json.Unmarshal(content, &c)
	return c.JoinRule
}

// level reads a power level: an integer, or (before room version 10) a
// string holding one.
func level(raw json.RawMessage) (int64, bool) {
	s := strings.TrimSpace(string(raw))
	if strings.HasPrefix(s, `"`) {
		var str string
		if json.Unmarshal(raw, &str) != nil {
			return 0, false
		}
		s = strings.TrimSpace(str)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
