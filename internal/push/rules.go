// Package push implements push rules (spec: Client-Server API, "Push
// Notifications"): the server-default rule set, merging a user's changes into
// it, validating rules clients upload, and evaluating rules against events.
// Rule handling here is pure: no database, HTTP or clock.
package push

import (
	"encoding/json"
	"slices"
)

// Kinds are the rule kinds in priority order (spec "Push Rules").
var Kinds = []string{"override", "content", "room", "sender", "underride"}

// ValidKind reports whether k names a rule kind.
func ValidKind(k string) bool { return slices.Contains(Kinds, k) }

// Condition is one push condition. Only the fields of its kind are set.
type Condition struct {
	Kind    string          `json:"kind"`
	Key     string          `json:"key,omitempty"`
	Pattern *string         `json:"pattern,omitempty"`
	Value   json.RawMessage `json:"value,omitempty"`
	Is      string          `json:"is,omitempty"`
}

// Rule is one push rule as clients see it.
type Rule struct {
	RuleID     string            `json:"rule_id"`
	Default    bool              `json:"default"`
	Enabled    bool              `json:"enabled"`
	Actions    []json.RawMessage `json:"actions"`
	Conditions []Condition       `json:"conditions,omitempty"`
	Pattern    *string           `json:"pattern,omitempty"`
}

// MarshalJSON writes conditions when the rule has a list, even an empty
// one (override and underride rules), and leaves the key out otherwise.
func (r *Rule) MarshalJSON() ([]byte, error) {
	type plain Rule
	if r.Conditions == nil {
		return json.Marshal((*plain)(r))
	}
	return json.Marshal(struct {
		*plain
		Conditions []Condition `json:"conditions"`
	}{(*plain)(r), r.Conditions})
}

// Ruleset is the rules of one scope, by kind. Every list is present (empty
// rather than null) when marshalled through Normalize.
type Ruleset struct {
	Override  []*Rule `json:"override"`
	Content   []*Rule `json:"content"`
	Room      []*Rule `json:"room"`
	Sender    []*Rule `json:"sender"`
	Underride []*Rule `json:"underride"`
}

// List returns a pointer to the list of kind k (nil for an unknown kind).
func (rs *Ruleset) List(k string) *[]*Rule {
	switch k {
	case "override":
		return &rs.Override
	case "content":
		return &rs.Content
	case "room":
		return &rs.Room
	case "sender":
		return &rs.Sender
	case "underride":
		return &rs.Underride
	}
	return nil
}

// Find returns the rule of kind k with ID id and its index, or nil.
func (rs *Ruleset) Find(k, id string) (*Rule, int) {
	l := rs.List(k)
	if l == nil {
		return nil, -1
	}
	for i, r := range *l {
		if r.RuleID == id {
			return r, i
		}
	}
	return nil, -1
}

// Account is the content of the m.push_rules account data event.
type Account struct {
	Global *Ruleset `json:"global"`
}

// Actions that can appear as plain strings. "dont_notify" and "coalesce" are
// obsolete since v1.7 but clients still send them; they mean "no action".
var stringActions = []string{"notify", "dont_notify", "coalesce"}

func act(s string) json.RawMessage { b, _ := json.Marshal(s); return b }

func tweak(name string, value any) json.RawMessage {
	m := map[string]any{"set_tweak": name}
	if value != nil {
		m["value"] = value
	}
	b, _ := json.Marshal(m)
	return b
}

func match(key, pattern string) Condition {
	return Condition{Kind: "event_match", Key: key, Pattern: &pattern}
}

func propertyIs(key string, value any) Condition {
	b, _ := json.Marshal(value)
	return Condition{Kind: "event_property_is", Key: key, Value: b}
}

// Defaults returns the server-default rules for userID, in the order of the
// spec's "Predefined Rules" (v1.16: the v1.7 mention rules, v1.4's
// .m.rule.room.server_acl, v1.9's .m.rule.suppress_edits), plus Synapse's
// MSC3930 poll rules. localpart is used by .m.rule.contains_user_name.
func Defaults(userID string) *Ruleset {
	local := userID
	if len(local) > 0 && local[0] == '@' {
		local = local[1:]
	}
	for i := 0; i < len(local); i++ {
		if local[i] == ':' {
			local = local[:i]
			break
		}
	}
	notify := act("notify")
	soundDefault := tweak("sound", "default")
	highlight := tweak("highlight", nil)
	userIDs, _ := json.Marshal(userID)
	rule := func(id string, actions []json.RawMessage, conds ...Condition) *Rule {
		if actions == nil {
			actions = []json.RawMessage{}
		}
		if conds == nil {
			conds = []Condition{}
		}
		return &Rule{RuleID: id, Default: true, Enabled: true, Actions: actions, Conditions: conds}
	}
	master := rule(".m.rule.master", nil)
	master.Enabled = false
	rs := &Ruleset{
		Override: []*Rule{
			master,
			rule(".m.rule.suppress_notices", nil, match("content.msgtype", "m.notice")),
			rule(".m.rule.invite_for_me", []json.RawMessage{notify, soundDefault},
				match("type", "m.room.member"), match("content.membership", "invite"), match("state_key", userID)),
			rule(".m.rule.member_event", nil, match("type", "m.room.member")),
			rule(".m.rule.is_user_mention", []json.RawMessage{notify, highlight, soundDefault},
				Condition{Kind: "event_property_contains", Key: `content.m\.mentions.user_ids`, Value: userIDs}),
			rule(".m.rule.contains_display_name", []json.RawMessage{notify, soundDefault, highlight},
				Condition{Kind: "contains_display_name"}),
			rule(".m.rule.is_room_mention", []json.RawMessage{notify, highlight},
				propertyIs(`content.m\.mentions.room`, true), Condition{Kind: "sender_notification_permission", Key: "room"}),
			rule(".m.rule.roomnotif", []json.RawMessage{notify, highlight},
				Condition{Kind: "sender_notification_permission", Key: "room"}, match("content.body", "@room")),
			rule(".m.rule.tombstone", []json.RawMessage{notify, highlight},
				match("type", "m.room.tombstone"), match("state_key", "")),
			rule(".m.rule.reaction", nil, match("type", "m.reaction")),
			rule(".m.rule.room.server_acl", nil, match("type", "m.room.server_acl"), match("state_key", "")),
			rule(".m.rule.suppress_edits", nil, propertyIs(`content.m\.relates_to.rel_type`, "m.replace")),
			// MSC3930 (polls), under the unstable IDs and event types
			// Synapse serves: poll responses never notify.
			rule(".org.matrix.msc3930.rule.poll_response", nil, match("type", "org.matrix.msc3381.poll.response")),
		},
		Content: []*Rule{{
			RuleID: ".m.rule.contains_user_name", Default: true, Enabled: true, Pattern: &local,
			Actions: []json.RawMessage{notify, soundDefault, highlight},
		}},
		Room:   []*Rule{},
		Sender: []*Rule{},
		Underride: []*Rule{
			rule(".m.rule.call", []json.RawMessage{notify, tweak("sound", "ring")}, match("type", "m.call.invite")),
			rule(".m.rule.encrypted_room_one_to_one", []json.RawMessage{notify, soundDefault},
				Condition{Kind: "room_member_count", Is: "2"}, match("type", "m.room.encrypted")),
			rule(".m.rule.room_one_to_one", []json.RawMessage{notify, soundDefault},
				Condition{Kind: "room_member_count", Is: "2"}, match("type", "m.room.message")),
			rule(".m.rule.message", []json.RawMessage{notify}, match("type", "m.room.message")),
			rule(".m.rule.encrypted", []json.RawMessage{notify}, match("type", "m.room.encrypted")),
			// MSC3930: poll starts and ends notify like messages, the
			// one-to-one rules (with a sound) before the general ones.
			rule(".org.matrix.msc3930.rule.poll_start_one_to_one", []json.RawMessage{notify, soundDefault},
				Condition{Kind: "room_member_count", Is: "2"}, match("type", "org.matrix.msc3381.poll.start")),
			rule(".org.matrix.msc3930.rule.poll_start", []json.RawMessage{notify}, match("type", "org.matrix.msc3381.poll.start")),
			rule(".org.matrix.msc3930.rule.poll_end_one_to_one", []json.RawMessage{notify, soundDefault},
				Condition{Kind: "room_member_count", Is: "2"}, match("type", "org.matrix.msc3381.poll.end")),
			rule(".org.matrix.msc3930.rule.poll_end", []json.RawMessage{notify}, match("type", "org.matrix.msc3381.poll.end")),
		},
	}
	return rs
}

// Normalize rebuilds a user's rule set from what was stored: the current
// server-default rules (keeping the stored enabled flag and actions of each)
// and the stored user-defined rules. Spec "Predefined Rules": server-default
// rules rank below user-defined rules of the same kind, except
// .m.rule.master, which ranks above everything. Stored rules that are no
// longer valid defaults are dropped, so a server upgrade that changes the
// defaults takes effect on the next read.
func Normalize(userID string, stored *Ruleset) *Ruleset {
	out := Defaults(userID)
	if stored == nil {
		return out
	}
	for _, k := range Kinds {
		defs := out.List(k)
		var user []*Rule
		for _, r := range *stored.List(k) {
			if r == nil {
				continue
			}
			if r.Default {
				if d, _ := out.Find(k, r.RuleID); d != nil {
					d.Enabled = r.Enabled
					if r.Actions != nil {
						d.Actions = r.Actions
					}
				}
				continue
			}
			if len(r.RuleID) > 0 && r.RuleID[0] == '.' {
				continue
			}
			if r.Actions == nil {
				r.Actions = []json.RawMessage{}
			}
			user = append(user, r)
		}
		var merged []*Rule
		rest := *defs
		if k == "override" && len(rest) > 0 && rest[0].RuleID == ".m.rule.master" {
			merged = append(merged, rest[0])
			rest = rest[1:]
		}
		merged = append(merged, user...)
		merged = append(merged, rest...)
		if merged == nil {
			merged = []*Rule{}
		}
		*defs = merged
	}
	return out
}

// UserRules returns the indexes bounds of the user-defined rules in list
// (kind k of a normalized set): they sit in [lo, hi).
func UserRules(k string, list []*Rule) (lo, hi int) {
	lo = 0
	if k == "override" && len(list) > 0 && list[0].Default && list[0].RuleID == ".m.rule.master" {
		lo = 1
	}
	hi = lo
	for hi < len(list) && !list[hi].Default {
		hi++
	}
	return lo, hi
}
