package push

import (
	"encoding/json"
	"slices"
	"strings"

	"conclave/internal/matrix"
)

// Bounds on what clients may upload.
const (
	MaxRuleIDLen     = 255
	MaxUserRules     = 500 // per user, all kinds together
	MaxConditions    = 32
	MaxActions       = 16
	MaxPatternLen    = 1024
	MaxConditionKey  = 255
	maxConditionJSON = 4096
)

// CheckRuleID validates a user-defined rule ID (spec: PUT
// /pushrules/global/{kind}/{ruleId}: IDs starting with "." are reserved for
// server-default rules; "/" and "\" are not allowed).
func CheckRuleID(id string) error {
	switch {
	case id == "":
		return matrix.InvalidParam("Empty rule ID")
	case len(id) > MaxRuleIDLen:
		return matrix.InvalidParam("Rule ID is longer than %d bytes", MaxRuleIDLen)
	case id[0] == '.':
		return matrix.InvalidParam("Rule IDs starting with '.' are reserved for server-default rules")
	case strings.ContainsAny(id, `/\`):
		return matrix.InvalidParam("Rule IDs may not contain '/' or '\\'")
	}
	return nil
}

// CheckActions validates a list of actions: the string actions of the spec
// or {"set_tweak": name, "value": ...} objects.
func CheckActions(actions []json.RawMessage) error {
	if actions == nil {
		return matrix.MissingParam("Missing actions")
	}
	if len(actions) > MaxActions {
		return matrix.InvalidParam("At most %d actions are allowed", MaxActions)
	}
	for _, a := range actions {
		var s string
		if json.Unmarshal(a, &s) == nil {
			if !slices.Contains(stringActions, s) {
				return matrix.InvalidParam("Unrecognised action %q", s)
			}
			continue
		}
		var t map[string]json.RawMessage
		if json.Unmarshal(a, &t) != nil || t == nil {
			return matrix.InvalidParam("Actions must be strings or objects")
		}
		var name string
		if json.Unmarshal(t["set_tweak"], &name) != nil || name == "" {
			return matrix.InvalidParam("Action objects need a set_tweak string")
		}
		if len(a) > maxConditionJSON {
			return matrix.InvalidParam("Action is too large")
		}
	}
	return nil
}

// CheckConditions validates conditions: each needs a kind; the fields of
// the kinds the spec defines must have the right types. Unknown kinds are
// kept (the spec says they never match).
func CheckConditions(conds []Condition) error {
	if len(conds) > MaxConditions {
		return matrix.InvalidParam("At most %d conditions are allowed", MaxConditions)
	}
	for _, c := range conds {
		if len(c.Key) > MaxConditionKey || (c.Pattern != nil && len(*c.Pattern) > MaxPatternLen) || len(c.Value) > maxConditionJSON || len(c.Is) > 16 {
			return matrix.InvalidParam("Condition is too large")
		}
		switch c.Kind {
		case "":
			return matrix.InvalidParam("Condition is missing its kind")
		case "event_match":
			if c.Key == "" || c.Pattern == nil {
				return matrix.InvalidParam("event_match needs key and pattern")
			}
		case "event_property_is", "event_property_contains":
			if c.Key == "" || len(c.Value) == 0 {
				return matrix.InvalidParam("%s needs key and value", c.Kind)
			}
			if !scalar(c.Value) {
				return matrix.InvalidParam("%s value must be a string, integer, boolean or null", c.Kind)
			}
		case "room_member_count":
			if _, _, ok := parseIs(c.Is); !ok {
				return matrix.InvalidParam("room_member_count needs a valid 'is'")
			}
		case "sender_notification_permission":
			if c.Key == "" {
				return matrix.InvalidParam("sender_notification_permission needs a key")
			}
		}
	}
	return nil
}

// scalar reports whether v is a JSON string, integer, boolean or null
// (spec: event_property_is / event_property_contains values).
func scalar(v json.RawMessage) bool {
	var x any
	d := json.NewDecoder(strings.NewReader(string(v)))
	d.UseNumber()
	if d.Decode(&x) != nil {
		return false
	}
	switch t := x.(type) {
	case string, bool, nil:
		return true
	case json.Number:
		_, err := t.Int64()
		return err == nil
	}
	return false
}

// NewRule is the body of PUT /pushrules/global/{kind}/{ruleId}.
type NewRule struct {
	Actions    []json.RawMessage `json:"actions"`
	Conditions []Condition       `json:"conditions"`
	Pattern    *string           `json:"pattern"`
}

// Build validates body for a rule of kind k with ID id and returns the rule.
// Room and sender rules get the condition their ID implies.
func Build(k, id string, body *NewRule) (*Rule, error) {
	if err := CheckRuleID(id); err != nil {
		return nil, err
	}
	if err := CheckActions(body.Actions); err != nil {
		return nil, err
	}
	r := &Rule{RuleID: id, Enabled: true, Actions: body.Actions}
	switch k {
	case "override", "underride":
		if err := CheckConditions(body.Conditions); err != nil {
			return nil, err
		}
		r.Conditions = body.Conditions
		if r.Conditions == nil {
			r.Conditions = []Condition{}
		}
	case "content":
		if body.Pattern == nil {
			return nil, matrix.MissingParam("Content rules need a pattern")
		}
		if len(*body.Pattern) > MaxPatternLen {
			return nil, matrix.InvalidParam("Pattern is longer than %d bytes", MaxPatternLen)
		}
		r.Pattern = body.Pattern
	case "room":
		if !matrix.ValidRoomID(id) {
			return nil, matrix.InvalidParam("Room rules need a room ID as rule ID")
		}
	case "sender":
		if !matrix.ValidUserID(id) {
			return nil, matrix.InvalidParam("Sender rules need a user ID as rule ID")
		}
	default:
		return nil, matrix.InvalidParam("Unknown rule kind %q", k)
	}
	return r, nil
}

// CountUserRules counts the user-defined rules of rs.
func CountUserRules(rs *Ruleset) int {
	n := 0
	for _, k := range Kinds {
		for _, r := range *rs.List(k) {
			if !r.Default {
				n++
			}
		}
	}
	return n
}
