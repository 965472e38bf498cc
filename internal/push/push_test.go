package push

import (
	"encoding/json"
	"strings"
	"testing"
)

const alice = "@alice:example.org"

func ev(t *testing.T, m map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func msg(body string, extra map[string]any) map[string]any {
	c := map[string]any{"msgtype": "m.text", "body": body}
	for k, v := range extra {
		c[k] = v
	}
	return map[string]any{"type": "m.room.message", "sender": "@bob:example.org", "room_id": "!r:example.org", "content": c}
}

func TestDefaultsShape(t *testing.T) {
	rs := Defaults(alice)
	b, _ := json.Marshal(Account{Global: rs})
	var got map[string]map[string][]map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	g := got["global"]
	for _, k := range Kinds {
		if g[k] == nil {
			t.Fatalf("kind %s missing or null: %s", k, b)
		}
	}
	if g["override"][0]["rule_id"] != ".m.rule.master" || g["override"][0]["enabled"] != false {
		t.Fatalf("master first and disabled: %v", g["override"][0])
	}
	if c, ok := g["override"][0]["conditions"].([]any); !ok || len(c) != 0 {
		t.Fatalf("master has empty conditions: %v", g["override"][0])
	}
	if g["content"][0]["pattern"] != "alice" {
		t.Fatalf("contains_user_name pattern: %v", g["content"][0])
	}
	if _, ok := g["content"][0]["conditions"]; ok {
		t.Fatal("content rules have no conditions key")
	}
	for _, k := range Kinds {
		for _, r := range g[k] {
			if r["default"] != true || r["actions"] == nil || !strings.HasPrefix(r["rule_id"].(string), ".m.rule.") && !strings.HasPrefix(r["rule_id"].(string), ".org.matrix.msc3930.rule.") {
				t.Fatalf("default rule shape: %v", r)
			}
		}
	}
	// The spec's order of the predefined underride rules.
	var ids []string
	for _, r := range g["underride"] {
		ids = append(ids, r["rule_id"].(string))
	}
	if strings.Join(ids, ",") != ".m.rule.call,.m.rule.encrypted_room_one_to_one,.m.rule.room_one_to_one,.m.rule.message,.m.rule.encrypted,.org.matrix.msc3930.rule.poll_start_one_to_one,.org.matrix.msc3930.rule.poll_start,.org.matrix.msc3930.rule.poll_end_one_to_one,.org.matrix.msc3930.rule.poll_end" {
		t.Fatalf("underride order: %v", ids)
	}
}

func env(members int) *Env {
	return &Env{UserID: alice, DisplayName: "Alice Liddell", MemberCount: members, SenderPower: 0,
		NotificationPower: func(string) int64 { return 50 }}
}

func TestEvaluateDefaults(t *testing.T) {
	rs := Defaults(alice)
	cases := []struct {
		name            string
		event           map[string]any
		members         int
		power           int64
		notify, hilight bool
		rule            string
	}{
		{"plain message in group", msg("hello", nil), 5, 0, true, false, ".m.rule.message"},
		{"one to one", msg("hello", nil), 2, 0, true, false, ".m.rule.room_one_to_one"},
		{"notice suppressed", map[string]any{"type": "m.room.message", "content": map[string]any{"msgtype": "m.notice", "body": "x"}}, 5, 0, false, false, ".m.rule.suppress_notices"},
		{"user name at word boundary", msg("hey alice, look", nil), 5, 0, true, true, ".m.rule.contains_user_name"},
		{"user name inside a word", msg("malice aforethought", nil), 5, 0, true, false, ".m.rule.message"},
		{"display name", msg("hi Alice Liddell!", nil), 5, 0, true, true, ".m.rule.contains_display_name"},
		{"m.mentions", msg("hi", map[string]any{"m.mentions": map[string]any{"user_ids": []string{alice}}}), 5, 0, true, true, ".m.rule.is_user_mention"},
		{"room mention without power", msg("hi", map[string]any{"m.mentions": map[string]any{"room": true}}), 5, 0, true, false, ".m.rule.message"},
		{"room mention with power", msg("hi", map[string]any{"m.mentions": map[string]any{"room": true}}), 5, 50, true, true, ".m.rule.is_room_mention"},
		{"@room legacy", msg("@room wake up", nil), 5, 100, true, true, ".m.rule.roomnotif"},
		{"edit suppressed", msg("* fixed", map[string]any{"m.relates_to": map[string]any{"rel_type": "m.replace", "event_id": "$x"}}), 5, 0, false, false, ".m.rule.suppress_edits"},
		{"invite for me", map[string]any{"type": "m.room.member", "state_key": alice, "content": map[string]any{"membership": "invite"}}, 5, 0, true, false, ".m.rule.invite_for_me"},
		{"other member event", map[string]any{"type": "m.room.member", "state_key": "@x:y", "content": map[string]any{"membership": "join"}}, 5, 0, false, false, ".m.rule.member_event"},
		{"tombstone", map[string]any{"type": "m.room.tombstone", "state_key": "", "content": map[string]any{}}, 5, 0, true, true, ".m.rule.tombstone"},
		{"reaction", map[string]any{"type": "m.reaction", "content": map[string]any{}}, 5, 0, false, false, ".m.rule.reaction"},
		{"encrypted 1:1", map[string]any{"type": "m.room.encrypted", "content": map[string]any{}}, 2, 0, true, false, ".m.rule.encrypted_room_one_to_one"},
		{"call", map[string]any{"type": "m.call.invite", "content": map[string]any{}}, 5, 0, true, false, ".m.rule.call"},
		{"unknown type", map[string]any{"type": "org.example", "content": map[string]any{}}, 5, 0, false, false, ""},
	}
	for _, c := range cases {
		e := env(c.members)
		e.SenderPower = c.power
		got := Evaluate(rs, ev(t, c.event), e)
		if got.Notify != c.notify || got.Highlight != c.hilight || got.RuleID != c.rule {
			t.Errorf("%s: got %+v, want notify=%v highlight=%v rule=%s", c.name, got, c.notify, c.hilight, c.rule)
		}
	}
	// Disabling the master rule's counterpart: enabling master silences all.
	rs.Override[0].Enabled = true
	if got := Evaluate(rs, ev(t, msg("hey alice", nil)), env(2)); got.Notify || got.RuleID != ".m.rule.master" {
		t.Fatalf("master: %+v", got)
	}
	if got := Evaluate(rs, []byte("not json"), env(2)); got.RuleID != "" {
		t.Fatalf("bad JSON matched: %+v", got)
	}
}

func TestGlobAndKeys(t *testing.T) {
	cases := []struct {
		s, glob string
		whole   bool
		want    bool
	}{
		{"m.room.message", "m.room.*", true, true},
		{"m.room.message", "m.room", true, false},
		{"m.room.message", "m.?oom.message", true, true},
		{"cake is a lie", "cake*lie", false, true},
		{"cakeisalie", "lie", false, false},
		{"a.b", "a.b", true, true},
		{"axb", "a.b", true, false}, // dots are literal
		{"héllo wörld", "wörld", false, true},
		{"", "*", true, true},
	}
	for _, c := range cases {
		if got := wordMatch(c.s, c.glob, c.whole); got != c.want {
			t.Errorf("wordMatch(%q, %q, %v) = %v", c.s, c.glob, c.whole, got)
		}
	}
	if got := splitKey(`content.m\.relates_to.rel\\type`); strings.Join(got, "|") != `content|m.relates_to|rel\type` {
		t.Fatalf("splitKey: %q", got)
	}
	for is, want := range map[string]bool{"2": true, "==2": true, ">=3": false, "<3": true, ">1": true, "<=1": false, "x": false, "": false} {
		c := Condition{Kind: "room_member_count", Is: is}
		if got := conditionMatches(&c, &Event{m: map[string]any{}}, env(2)); got != want {
			t.Errorf("room_member_count %q = %v", is, got)
		}
	}
	unknown := Condition{Kind: "org.example.future"}
	if conditionMatches(&unknown, &Event{m: map[string]any{}}, env(2)) {
		t.Fatal("unknown condition kinds must not match")
	}
}

func TestNormalizeAndUserRules(t *testing.T) {
	stored := Defaults(alice)
	stored.Override[1].Enabled = false // suppress_notices off
	stored.Underride[3].Actions = []json.RawMessage{json.RawMessage(`"dont_notify"`)}
	stored.Room = []*Rule{{RuleID: "!r:example.org", Enabled: true, Actions: []json.RawMessage{json.RawMessage(`"dont_notify"`)}}}
	none := "org.none"
	stored.Override = append(stored.Override, &Rule{RuleID: "mine", Enabled: true, Actions: []json.RawMessage{}, Conditions: []Condition{{Kind: "event_match", Key: "type", Pattern: &none}}})
	stored.Override = append(stored.Override, &Rule{RuleID: ".m.rule.gone", Default: true, Enabled: false})
	stored.Underride = append(stored.Underride, &Rule{RuleID: ".forged", Enabled: true}) // not default but reserved ID
	rs := Normalize(alice, stored)
	if rs.Override[0].RuleID != ".m.rule.master" || rs.Override[1].RuleID != "mine" || rs.Override[2].RuleID != ".m.rule.suppress_notices" {
		t.Fatalf("override order: %s %s %s", rs.Override[0].RuleID, rs.Override[1].RuleID, rs.Override[2].RuleID)
	}
	if rs.Override[2].Enabled {
		t.Fatal("stored enabled flag of a default rule lost")
	}
	if r, _ := rs.Find("override", ".m.rule.gone"); r != nil {
		t.Fatal("unknown default kept")
	}
	if r, _ := rs.Find("underride", ".forged"); r != nil {
		t.Fatal("reserved ID kept as user rule")
	}
	if r, _ := rs.Find("underride", ".m.rule.message"); string(r.Actions[0]) != `"dont_notify"` {
		t.Fatal("stored actions lost")
	}
	if got := Evaluate(rs, ev(t, msg("hi", nil)), env(5)); got.Notify || got.RuleID != "!r:example.org" {
		t.Fatalf("room rule: %+v", got)
	}
	if lo, hi := UserRules("override", rs.Override); lo != 1 || hi != 2 {
		t.Fatalf("UserRules = %d, %d", lo, hi)
	}
	if n := CountUserRules(rs); n != 2 {
		t.Fatalf("CountUserRules = %d", n)
	}
	if rs := Normalize(alice, nil); len(rs.Override) != len(Defaults(alice).Override) {
		t.Fatal("nil stored")
	}
}

func TestBuildValidation(t *testing.T) {
	acts := []json.RawMessage{json.RawMessage(`"notify"`), json.RawMessage(`{"set_tweak":"sound","value":"default"}`)}
	pat := "cake"
	ok := []struct {
		kind, id string
		body     NewRule
	}{
		{"override", "a", NewRule{Actions: acts}},
		{"underride", "b", NewRule{Actions: acts, Conditions: []Condition{{Kind: "event_match", Key: "type", Pattern: &pat}}}},
		{"content", "c", NewRule{Actions: acts, Pattern: &pat}},
		{"room", "!r:example.org", NewRule{Actions: acts}},
		{"sender", "@bob:example.org", NewRule{Actions: []json.RawMessage{json.RawMessage(`"dont_notify"`)}}},
	}
	for _, c := range ok {
		r, err := Build(c.kind, c.id, &c.body)
		if err != nil || !r.Enabled || r.Default {
			t.Errorf("Build(%s, %s): %v", c.kind, c.id, err)
		}
	}
	bad := []struct {
		kind, id string
		body     NewRule
		code     string
	}{
		{"override", ".m.rule.x", NewRule{Actions: acts}, "M_INVALID_PARAM"},
		{"override", "a/b", NewRule{Actions: acts}, "M_INVALID_PARAM"},
		{"override", `a\b`, NewRule{Actions: acts}, "M_INVALID_PARAM"},
		{"override", strings.Repeat("x", 256), NewRule{Actions: acts}, "M_INVALID_PARAM"},
		{"override", "a", NewRule{}, "M_MISSING_PARAM"},
		{"override", "a", NewRule{Actions: []json.RawMessage{json.RawMessage(`"explode"`)}}, "M_INVALID_PARAM"},
		{"override", "a", NewRule{Actions: []json.RawMessage{json.RawMessage(`{"value":1}`)}}, "M_INVALID_PARAM"},
		{"override", "a", NewRule{Actions: []json.RawMessage{json.RawMessage(`5`)}}, "M_INVALID_PARAM"},
		{"override", "a", NewRule{Actions: acts, Conditions: []Condition{{Kind: ""}}}, "M_INVALID_PARAM"},
		{"override", "a", NewRule{Actions: acts, Conditions: []Condition{{Kind: "event_match", Key: "type"}}}, "M_INVALID_PARAM"},
		{"override", "a", NewRule{Actions: acts, Conditions: []Condition{{Kind: "event_property_is", Key: "k", Value: json.RawMessage(`1.5`)}}}, "M_INVALID_PARAM"},
		{"override", "a", NewRule{Actions: acts, Conditions: []Condition{{Kind: "room_member_count", Is: "lots"}}}, "M_INVALID_PARAM"},
		{"content", "c", NewRule{Actions: acts}, "M_MISSING_PARAM"},
		{"room", "not-a-room", NewRule{Actions: acts}, "M_INVALID_PARAM"},
		{"sender", "bob", NewRule{Actions: acts}, "M_INVALID_PARAM"},
		{"weird", "a", NewRule{Actions: acts}, "M_INVALID_PARAM"},
	}
	for _, c := range bad {
		_, err := Build(c.kind, c.id, &c.body)
		if err == nil || !strings.Contains(err.Error(), c.code) {
			t.Errorf("Build(%s, %q) = %v, want %s", c.kind, c.id, err, c.code)
		}
	}
	many := make([]json.RawMessage, MaxActions+1)
	for i := range many {
		many[i] = json.RawMessage(`"notify"`)
	}
	if CheckActions(many) == nil {
		t.Fatal("too many actions accepted")
	}
}

func BenchmarkEvaluate(b *testing.B) {
	rs := Defaults(alice)
	e := env(5)
	evj, _ := json.Marshal(msg(strings.Repeat("lorem ipsum dolor sit amet ", 40), nil))
	b.ReportAllocs()
	for b.Loop() {
		Evaluate(rs, evj, e)
	}
}
