package authrules

import (
	"testing"

	"conclave/internal/event"
)

func TestGenericRules(t *testing.T) {
	runCases(t, []ruleCase{
		{name: "message by member", build: func(r *room) *event.PDU {
			r.standard()
			return r.ev("m.room.message", bob, nil, `{"body":"hi"}`)
		}},
		{name: "message by non-member", want: "sender.not_joined", build: func(r *room) *event.PDU {
			r.standard()
			return r.ev("m.room.message", carol, nil, `{"body":"hi"}`)
		}},
		{name: "message by invitee", want: "sender.not_joined", build: func(r *room) *event.PDU {
			r.standard().member(carol, MembershipInvite)
			return r.ev("m.room.message", carol, nil, `{}`)
		}},
		{name: "events_default above sender", want: "event.power", build: func(r *room) *event.PDU {
			r.standard().member(carol, MembershipJoin)
			r.powerLevels(`{"events_default":1}`)
			return r.ev("m.room.message", carol, nil, `{}`)
		}},
		{name: "events entry above sender", want: "event.power", build: func(r *room) *event.PDU {
			r.standard()
			r.powerLevels(`{"events":{"m.reaction":60},"users":{"@bob:b.example":50}}`)
			return r.ev("m.reaction", bob, nil, `{}`)
		}},
		{name: "events entry lowers state level", build: func(r *room) *event.PDU {
			r.standard().member(carol, MembershipJoin)
			r.powerLevels(`{"events":{"m.room.topic":0}}`)
			return r.ev("m.room.topic", carol, sk(""), `{"topic":"t"}`)
		}},
		{name: "state default 50", want: "event.power", build: func(r *room) *event.PDU {
			r.standard().member(carol, MembershipJoin)
			return r.ev("m.room.topic", carol, sk(""), `{}`)
		}},
		{name: "state default 50 without PL event", want: "event.power", build: func(r *room) *event.PDU {
			r.member(alice, MembershipJoin).member(bob, MembershipJoin)
			return r.ev("m.room.topic", bob, sk(""), `{}`)
		}},
		{name: "creator sends state without PL event", build: func(r *room) *event.PDU {
			r.member(alice, MembershipJoin)
			return r.ev("m.room.topic", alice, sk(""), `{}`)
		}},
		{name: "state at level", build: func(r *room) *event.PDU {
			r.standard()
			return r.ev("m.room.topic", bob, sk(""), `{}`)
		}},
		{name: "state_key of other user", want: "state_key.user", build: func(r *room) *event.PDU {
			r.standard()
			return r.ev("org.example.profile", bob, sk(alice), `{}`)
		}},
		{name: "state_key of self", build: func(r *room) *event.PDU {
			r.standard()
			return r.ev("org.example.profile", bob, sk(bob), `{}`)
		}},
		{name: "third party invite event at invite level", build: func(r *room) *event.PDU {
			r.standard().member(carol, MembershipJoin)
			return r.ev(TypeThirdPartyInvite, carol, sk("tok"), `{}`)
		}},
		{name: "third party invite event below invite level", want: "third_party_invite.power", build: func(r *room) *event.PDU {
			r.standard().member(carol, MembershipJoin)
			r.powerLevels(`{"invite":1}`)
			return r.ev(TypeThirdPartyInvite, carol, sk("tok"), `{}`)
		}},
		{name: "third party invite ignores events entry", build: func(r *room) *event.PDU {
			r.standard().member(carol, MembershipJoin)
			r.powerLevels(`{"events":{"m.room.third_party_invite":100}}`)
			return r.ev(TypeThirdPartyInvite, carol, sk("tok"), `{}`)
		}},
		{name: "third party invite by non-member", want: "sender.not_joined", build: func(r *room) *event.PDU {
			r.standard()
			return r.ev(TypeThirdPartyInvite, carol, sk("tok"), `{}`)
		}},
		{name: "v12 creator beats any level", versions: []int{12}, build: func(r *room) *event.PDU {
			r.standard()
			r.powerLevels(`{"events_default":9007199254740991,"state_default":9007199254740991}`)
			return r.ev("m.room.message", alice, nil, `{}`)
		}},
		{name: "v1-11 creator is ordinary once PL exists", versions: versions(1, 11), want: "event.power", build: func(r *room) *event.PDU {
			r.standard()
			r.powerLevels(`{"events_default":1}`)
			return r.ev("m.room.message", alice, nil, `{}`)
		}},
		{name: "stringy PL honoured before v10", versions: versions(1, 9), want: "event.power", build: func(r *room) *event.PDU {
			r.standard().member(carol, MembershipJoin)
			r.powerLevels(`{"events_default":" +01 "}`)
			return r.ev("m.room.message", carol, nil, `{}`)
		}},
		{name: "float PL honoured before v6", versions: versions(1, 5), want: "event.power", build: func(r *room) *event.PDU {
			r.standard()
			r.powerLevels(`{"events_default":5.1e1,"users":{"@bob:b.example":50.9}}`)
			return r.ev("m.room.message", bob, nil, `{}`)
		}},
	})
}

func TestRedactionRule(t *testing.T) {
	redaction := func(sender, target string) func(r *room) *event.PDU {
		return func(r *room) *event.PDU {
			r.standard().member(carol, MembershipJoin)
			e := r.ev(TypeRedaction, sender, nil, `{}`)
			e.EventID = "$r1:" + domainOf(sender)
			e.Redacts = target
			return e
		}
	}
	runCases(t, []ruleCase{
		{name: "v1-2 at redact level", versions: versions(1, 2), build: redaction(bob, "$x:c.example")},
		{name: "v1-2 same domain", versions: versions(1, 2), build: redaction(carol, "$x:c.example")},
		{name: "v1-2 other domain below level", versions: versions(1, 2), want: "redaction.power", build: redaction(carol, "$x:b.example")},
		{name: "v3+ redaction passes auth", versions: versions(3, 12), build: redaction(carol, "$x")},
		{name: "v3+ still needs the event level", versions: versions(3, 12), want: "event.power", build: func(r *room) *event.PDU {
			r.standard().member(carol, MembershipJoin)
			r.powerLevels(`{"events":{"m.room.redaction":10}}`)
			e := r.ev(TypeRedaction, carol, nil, `{}`)
			e.Redacts = "$x"
			return e
		}},
	})
}

func TestCanApplyRedaction(t *testing.T) {
	r := newRoom(10, "")
	pl, err := ParsePowerLevels(r.v, []byte(`{"users":{"@bob:b.example":50}}`), r.create)
	if err != nil {
		t.Fatal(err)
	}
	if !CanApplyRedaction(pl, bob, carol) {
		t.Error("bob at redact level")
	}
	if CanApplyRedaction(pl, carol, bob) {
		t.Error("carol below level, other server")
	}
	if !CanApplyRedaction(pl, dave, alice) {
		t.Error("same server")
	}
}

func TestPowerLevelsRuleKeyedOnType(t *testing.T) {
	runCases(t, []ruleCase{
		{name: "non-empty state_key still validated", want: "power_levels.users", build: func(r *room) *event.PDU {
			r.standard()
			return r.ev(TypePowerLevels, bob, sk("x"), `{"users":{"nobody":1}}`)
		}},
		{name: "message-type power levels still validated", want: "power_levels.named_new", build: func(r *room) *event.PDU {
			r.standard()
			return r.ev(TypePowerLevels, bob, nil, `{"ban":100}`)
		}},
	})
}
