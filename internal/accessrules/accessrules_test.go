package accessrules

import (
	"encoding/json"
	"testing"

	"conclave/internal/event"
)

// state is a room's state for the tests: (type, state key) → content.
type state struct {
	ev        map[[2]string]string
	published bool
}

func (s state) StateEvent(typ, key string) *event.PDU {
	c, ok := s.ev[[2]string{typ, key}]
	if !ok {
		return nil
	}
	k := key
	return &event.PDU{Type: typ, StateKey: &k, Content: json.RawMessage(c)}
}

func (s state) StateKeysOf(typ string) []string {
	var out []string
	for k, c := range s.ev {
		if k[0] == typ && len(c) > 2 {
			out = append(out, k[1])
		}
	}
	return out
}

func (s state) Published() bool { return s.published }

func ev(typ, key, content string) *event.PDU {
	return &event.PDU{Type: typ, StateKey: &key, Content: json.RawMessage(content)}
}

var policy = &Policy{ExternalServers: map[string]bool{"ext.example": true}, DefaultRule: Restricted}

func withRule(rule string, more map[[2]string]string) state {
	s := state{ev: map[[2]string]string{{"m.room.member", "@a:gov.example"}: `{"membership":"join"}`}}
	if rule != "" {
		s.ev[[2]string{EventType, ""}] = `{"rule":"` + rule + `"}`
	}
	for k, v := range more {
		s.ev[k] = v
	}
	return s
}

func TestCheck(t *testing.T) {
	invite := func(who string) *event.PDU { return ev("m.room.member", who, `{"membership":"invite"}`) }
	join := func(who string) *event.PDU { return ev("m.room.member", who, `{"membership":"join"}`) }
	for _, c := range []struct {
		name string
		st   state
		ev   *event.PDU
		ok   bool
	}{
		{"no rule: external invite", withRule("", nil), invite("@e:ext.example"), false},
		{"restricted: external invite", withRule(Restricted, nil), invite("@e:ext.example"), false},
		{"restricted: external leaves", withRule(Restricted, nil), ev("m.room.member", "@e:ext.example", `{"membership":"leave"}`), true},
		{"restricted: internal invite", withRule(Restricted, nil), invite("@b:gov.example"), true},
		{"unknown rule counts as restricted", withRule("weird", nil), invite("@e:ext.example"), false},
		{"unrestricted: external invite", withRule(Unrestricted, nil), invite("@e:ext.example"), true},
		{"unrestricted: external join uninvited", withRule(Unrestricted, nil), join("@e:ext.example"), false},
		{"unrestricted: external join invited", withRule(Unrestricted, map[[2]string]string{{"m.room.member", "@e:ext.example"}: `{"membership":"invite"}`}), join("@e:ext.example"), true},
		{"unrestricted: power to external", withRule(Unrestricted, nil), ev("m.room.power_levels", "", `{"users":{"@e:ext.example":"10"}}`), false},
		{"unrestricted: external at 0", withRule(Unrestricted, nil), ev("m.room.power_levels", "", `{"users":{"@e:ext.example":0,"@a:gov.example":100}}`), true},
		{"unrestricted: users_default", withRule(Unrestricted, nil), ev("m.room.power_levels", "", `{"users_default":1}`), false},
		{"restricted: users_default free", withRule(Restricted, nil), ev("m.room.power_levels", "", `{"users_default":1}`), true},
		{"restricted → unrestricted", withRule(Restricted, nil), ev(EventType, "", `{"rule":"unrestricted"}`), true},
		{"unrestricted → restricted", withRule(Unrestricted, nil), ev(EventType, "", `{"rule":"restricted"}`), false},
		{"restricted → direct", withRule(Restricted, nil), ev(EventType, "", `{"rule":"direct"}`), false},
		{"same rule again", withRule(Unrestricted, nil), ev(EventType, "", `{"rule":"unrestricted"}`), true},
		{"invalid rule", withRule("", nil), ev(EventType, "", `{"rule":"open"}`), false},
		{"published: unrestricted refused", state{ev: map[[2]string]string{}, published: true}, ev(EventType, "", `{"rule":"unrestricted"}`), false},
		{"none → direct, public join rule", withRule("", map[[2]string]string{{"m.room.join_rules", ""}: `{"join_rule":"public"}`}), ev(EventType, "", `{"rule":"direct"}`), false},
		{"none → direct", withRule("", nil), ev(EventType, "", `{"rule":"direct"}`), true},
		{"direct: name", withRule(Direct, nil), ev("m.room.name", "", `{"name":"x"}`), false},
		{"direct: topic", withRule(Direct, nil), ev("m.room.topic", "", `{"topic":"x"}`), false},
		{"direct: avatar", withRule(Direct, nil), ev("m.room.avatar", "", `{}`), false},
		{"direct: public join rule", withRule(Direct, nil), ev("m.room.join_rules", "", `{"join_rule":"public"}`), false},
		{"direct: invite join rule", withRule(Direct, nil), ev("m.room.join_rules", "", `{"join_rule":"invite"}`), true},
		{"unrestricted: name", withRule(Unrestricted, nil), ev("m.room.name", "", `{"name":"x"}`), true},
		{"direct: second member", withRule(Direct, nil), invite("@b:gov.example"), true},
		{"direct: third member", withRule(Direct, map[[2]string]string{{"m.room.member", "@b:gov.example"}: `{"membership":"leave"}`}), invite("@c:gov.example"), false},
		{"direct: second comes back", withRule(Direct, map[[2]string]string{{"m.room.member", "@b:gov.example"}: `{"membership":"leave"}`}), invite("@b:gov.example"), true},
		{"direct: one 3pid invite", withRule(Direct, nil), ev("m.room.third_party_invite", "tok", `{"display_name":"x"}`), true},
		{"direct: second 3pid invite", withRule(Direct, map[[2]string]string{{"m.room.third_party_invite", "tok"}: `{"display_name":"x"}`}), ev("m.room.third_party_invite", "tok2", `{"display_name":"y"}`), false},
		{"direct: 3pid revoked", withRule(Direct, map[[2]string]string{{"m.room.third_party_invite", "tok"}: `{"display_name":"x"}`}), ev("m.room.third_party_invite", "tok", `{}`), true},
		{"direct: member for the 3pid invite", withRule(Direct, map[[2]string]string{{"m.room.third_party_invite", "tok"}: `{"display_name":"x"}`}),
			ev("m.room.member", "@b:gov.example", `{"membership":"invite","third_party_invite":{"signed":{"token":"tok"}}}`), true},
		{"direct: other member beside the 3pid invite", withRule(Direct, map[[2]string]string{{"m.room.third_party_invite", "tok"}: `{"display_name":"x"}`}), invite("@c:gov.example"), false},
		{"message", withRule(Direct, nil), &event.PDU{Type: "m.room.name", Content: json.RawMessage(`{}`)}, true},
	} {
		err := policy.Check(c.ev, c.st)
		if (err == nil) != c.ok {
			t.Errorf("%s: got %v, want allowed=%v", c.name, err, c.ok)
		}
	}
}

func TestForCreate(t *testing.T) {
	for _, c := range []struct {
		name                          string
		given                         string
		isDirect, publicJoin, publish bool
		defaultRule, want             string
		fails                         bool
	}{
		{name: "private", defaultRule: Restricted, want: Restricted},
		{name: "private, unrestricted default", defaultRule: Unrestricted, want: Unrestricted},
		{name: "public keeps restricted", publicJoin: true, defaultRule: Unrestricted, want: Restricted},
		{name: "published keeps restricted", publish: true, defaultRule: Unrestricted, want: Restricted},
		{name: "direct", isDirect: true, defaultRule: Restricted, want: Direct},
		{name: "direct and public", isDirect: true, publicJoin: true, fails: true},
		{name: "given", given: `{"rule":"unrestricted"}`, want: Unrestricted},
		{name: "given direct without is_direct", given: `{"rule":"direct"}`, fails: true},
		{name: "given restricted with is_direct", given: `{"rule":"restricted"}`, isDirect: true, fails: true},
		{name: "given nonsense", given: `{"rule":7}`, fails: true},
		{name: "given unrestricted, published", given: `{"rule":"unrestricted"}`, publish: true, fails: true},
	} {
		p := &Policy{DefaultRule: c.defaultRule}
		d, err := p.ForCreate(json.RawMessage(c.given), c.given != "", c.isDirect, c.publicJoin, c.publish)
		if (err != nil) != c.fails || (!c.fails && d.Rule != c.want) {
			t.Errorf("%s: %+v %v", c.name, d, err)
		}
	}
}
