package authrules

import (
	"testing"

	"conclave/internal/event"
)

func memberEv(r *room, sender, target, content string) *event.PDU {
	return r.ev(TypeMember, sender, sk(target), content)
}

func TestMemberBasics(t *testing.T) {
	runCases(t, []ruleCase{
		{name: "no state_key", want: "member.no_state_key", build: func(r *room) *event.PDU {
			r.standard()
			return r.ev(TypeMember, carol, nil, `{"membership":"join"}`)
		}},
		{name: "no membership", want: "member.no_membership", build: func(r *room) *event.PDU {
			r.standard()
			return memberEv(r, carol, carol, `{"displayname":"c"}`)
		}},
		{name: "non-string membership", want: "member.unknown", build: func(r *room) *event.PDU {
			r.standard()
			return memberEv(r, carol, carol, `{"membership":1}`)
		}},
		{name: "unknown membership", want: "member.unknown", build: func(r *room) *event.PDU {
			r.standard()
			return memberEv(r, carol, carol, `{"membership":"dance"}`)
		}},
		{name: "knock before v7 is unknown", versions: versions(1, 6), want: "member.unknown", build: func(r *room) *event.PDU {
			r.standard().joinRule(JoinRuleKnock)
			return memberEv(r, carol, carol, `{"membership":"knock"}`)
		}},
	})
}

func TestJoin(t *testing.T) {
	firstJoin := func(r *room, target string) *event.PDU {
		e := memberEv(r, target, target, `{"membership":"join"}`)
		e.PrevEvents = []string{"$create"}
		return e
	}
	runCases(t, []ruleCase{
		{name: "creator first join", build: func(r *room) *event.PDU { return firstJoin(r, alice) }},
		{name: "creator first join, any sender", build: func(r *room) *event.PDU {
			e := firstJoin(r, alice)
			e.Sender = bob // the rule does not compare the sender
			return e
		}},
		{name: "non-creator first join", want: "member.join.rule", build: func(r *room) *event.PDU { return firstJoin(r, bob) }},
		{name: "first join needs create as only prev", want: "member.join.rule", build: func(r *room) *event.PDU {
			e := firstJoin(r, alice)
			e.PrevEvents = []string{"$create", "$other"}
			return e
		}},
		{name: "v12 additional creator gets no first-join shortcut", versions: []int{12}, want: "member.join.rule", build: func(r *room) *event.PDU {
			*r = *newRoom(12, `"additional_creators":["@bob:b.example"]`)
			return firstJoin(r, bob)
		}},
		{name: "v11+ creator is the sender, not content.creator", versions: []int{11, 12}, want: "member.join.rule", build: func(r *room) *event.PDU {
			*r = *newRoom(r.n, `"creator":"@bob:b.example"`)
			return firstJoin(r, bob)
		}},
		{name: "v1-10 creator is content.creator", versions: versions(1, 10), build: func(r *room) *event.PDU {
			r.create.Sender = bob
			return firstJoin(r, alice)
		}},
		{name: "sender mismatch", want: "member.join.sender", build: func(r *room) *event.PDU {
			r.standard()
			return memberEv(r, bob, carol, `{"membership":"join"}`)
		}},
		{name: "banned", want: "member.join.banned", build: func(r *room) *event.PDU {
			r.standard().member(carol, MembershipBan)
			return memberEv(r, carol, carol, `{"membership":"join"}`)
		}},
		{name: "public", build: func(r *room) *event.PDU {
			r.standard()
			return memberEv(r, carol, carol, `{"membership":"join"}`)
		}},
		{name: "public rejoin after leave", build: func(r *room) *event.PDU {
			r.standard().member(carol, MembershipLeave)
			return memberEv(r, carol, carol, `{"membership":"join"}`)
		}},
		{name: "already joined (profile change)", build: func(r *room) *event.PDU {
			r.standard().joinRule(JoinRuleInvite)
			return memberEv(r, bob, bob, `{"membership":"join","displayname":"B"}`)
		}},
		{name: "invite rule, invited", build: func(r *room) *event.PDU {
			r.standard().joinRule(JoinRuleInvite).member(carol, MembershipInvite)
			return memberEv(r, carol, carol, `{"membership":"join"}`)
		}},
		{name: "invite rule, not invited", want: "member.join.not_invited", build: func(r *room) *event.PDU {
			r.standard().joinRule(JoinRuleInvite)
			return memberEv(r, carol, carol, `{"membership":"join"}`)
		}},
		{name: "knock rule, invited", versions: versions(7, 12), build: func(r *room) *event.PDU {
			r.standard().joinRule(JoinRuleKnock).member(carol, MembershipInvite)
			return memberEv(r, carol, carol, `{"membership":"join"}`)
		}},
		{name: "knock rule, knocked only", versions: versions(7, 12), want: "member.join.not_invited", build: func(r *room) *event.PDU {
			r.standard().joinRule(JoinRuleKnock).member(carol, MembershipKnock)
			return memberEv(r, carol, carol, `{"membership":"join"}`)
		}},
		{name: "knock rule before v7", versions: versions(1, 6), want: "member.join.rule", build: func(r *room) *event.PDU {
			r.standard().joinRule(JoinRuleKnock).member(carol, MembershipInvite)
			return memberEv(r, carol, carol, `{"membership":"join"}`)
		}},
		{name: "private", want: "member.join.rule", build: func(r *room) *event.PDU {
			r.standard().joinRule(JoinRulePrivate).member(carol, MembershipInvite)
			return memberEv(r, carol, carol, `{"membership":"join"}`)
		}},
		{name: "no join rules event", want: "member.join.rule", build: func(r *room) *event.PDU {
			r.standard().member(carol, MembershipInvite)
			delete(r.state, StateKey{TypeJoinRules, ""})
			return memberEv(r, carol, carol, `{"membership":"join"}`)
		}},
		{name: "malformed join rule", want: "member.join.rule", build: func(r *room) *event.PDU {
			r.standard()
			r.set(r.ev(TypeJoinRules, alice, sk(""), `{"join_rule":5}`))
			return memberEv(r, carol, carol, `{"membership":"join"}`)
		}},
	})
}

func TestRestrictedJoin(t *testing.T) {
	signedByB := &fakeVerifier{signedBy: map[string]bool{"b.example": true}}
	via := `{"membership":"join","join_authorised_via_users_server":"@bob:b.example"}`
	restricted := func(rule string) func(r *room) *event.PDU {
		return func(r *room) *event.PDU {
			r.standard().joinRule(rule)
			return memberEv(r, carol, carol, via)
		}
	}
	runCases(t, []ruleCase{
		{name: "authorised", versions: versions(8, 12), verifier: signedByB, build: restricted(JoinRuleRestricted)},
		{name: "knock_restricted authorised", versions: versions(10, 12), verifier: signedByB, build: restricted(JoinRuleKnockRestricted)},
		{name: "knock_restricted before v10", versions: versions(8, 9), verifier: signedByB, want: "member.join.rule", build: restricted(JoinRuleKnockRestricted)},
		{name: "restricted before v8", versions: versions(1, 7), verifier: signedByB, want: "member.join.rule", build: restricted(JoinRuleRestricted)},
		{name: "invited needs no authoriser", versions: versions(8, 12), build: func(r *room) *event.PDU {
			r.standard().joinRule(JoinRuleRestricted).member(carol, MembershipInvite)
			return memberEv(r, carol, carol, `{"membership":"join"}`)
		}},
		{name: "no authoriser", versions: versions(8, 12), want: "member.join.restricted", build: func(r *room) *event.PDU {
			r.standard().joinRule(JoinRuleRestricted)
			return memberEv(r, carol, carol, `{"membership":"join"}`)
		}},
		{name: "authoriser not joined", versions: versions(8, 12), verifier: signedByB, want: "member.join.restricted", build: func(r *room) *event.PDU {
			r.standard().joinRule(JoinRuleRestricted).member(bob, MembershipLeave)
			return memberEv(r, carol, carol, via)
		}},
		{name: "authoriser cannot invite", versions: versions(8, 12), verifier: signedByB, want: "member.join.restricted", build: func(r *room) *event.PDU {
			r.standard().joinRule(JoinRuleRestricted)
			if r.v.PrivilegedCreators {
				r.powerLevels(`{"invite":60,"users":{"@bob:b.example":50}}`)
			} else {
				r.powerLevels(`{"invite":60,"users":{"@alice:a.example":100,"@bob:b.example":50}}`)
			}
			return memberEv(r, carol, carol, via)
		}},
		{name: "authoriser exactly at invite level", versions: versions(8, 12), verifier: signedByB, build: func(r *room) *event.PDU {
			r.standard().joinRule(JoinRuleRestricted)
			r.powerLevels(`{"invite":50,"users":{"@bob:b.example":50}}`)
			return memberEv(r, carol, carol, via)
		}},
		{name: "authoriser one below invite level", versions: versions(8, 12), verifier: signedByB, want: "member.join.restricted", build: func(r *room) *event.PDU {
			r.standard().joinRule(JoinRuleRestricted)
			r.powerLevels(`{"invite":51,"users":{"@bob:b.example":50}}`)
			return memberEv(r, carol, carol, via)
		}},
		{name: "not signed by authoriser's server", versions: versions(8, 12), verifier: &fakeVerifier{signedBy: map[string]bool{"c.example": true}},
			want: "member.authorised_via.signature", build: restricted(JoinRuleRestricted)},
		{name: "no verifier fails closed", versions: versions(8, 12), want: "member.authorised_via.signature", build: restricted(JoinRuleRestricted)},
		{name: "signature rule applies to any membership", versions: versions(8, 12), want: "member.authorised_via.signature", build: func(r *room) *event.PDU {
			r.standard()
			return memberEv(r, bob, bob, `{"membership":"leave","join_authorised_via_users_server":"@bob:b.example"}`)
		}},
		{name: "authoriser key not a user ID", versions: versions(8, 12), verifier: signedByB, want: "member.authorised_via.signature", build: func(r *room) *event.PDU {
			r.standard().joinRule(JoinRuleRestricted)
			return memberEv(r, carol, carol, `{"membership":"join","join_authorised_via_users_server":null}`)
		}},
		{name: "key ignored before v8 on public join", versions: versions(1, 7), build: func(r *room) *event.PDU {
			r.standard()
			return memberEv(r, carol, carol, via)
		}},
		{name: "v12 creator authorises", versions: []int{12}, verifier: &fakeVerifier{signedBy: map[string]bool{"a.example": true}}, build: func(r *room) *event.PDU {
			r.standard().joinRule(JoinRuleRestricted)
			r.powerLevels(`{"invite":100}`)
			return memberEv(r, carol, carol, `{"membership":"join","join_authorised_via_users_server":"@alice:a.example"}`)
		}},
	})
}

func TestInvite(t *testing.T) {
	runCases(t, []ruleCase{
		{name: "allowed", build: func(r *room) *event.PDU {
			r.standard()
			return memberEv(r, bob, carol, `{"membership":"invite"}`)
		}},
		{name: "sender not joined", want: "member.invite.sender_not_joined", build: func(r *room) *event.PDU {
			r.standard().member(dave, MembershipInvite)
			return memberEv(r, dave, carol, `{"membership":"invite"}`)
		}},
		{name: "target joined", want: "member.invite.target", build: func(r *room) *event.PDU {
			r.standard().member(carol, MembershipJoin)
			return memberEv(r, bob, carol, `{"membership":"invite"}`)
		}},
		{name: "target banned", want: "member.invite.target", build: func(r *room) *event.PDU {
			r.standard().member(carol, MembershipBan)
			return memberEv(r, bob, carol, `{"membership":"invite"}`)
		}},
		{name: "re-invite invited", build: func(r *room) *event.PDU {
			r.standard().member(carol, MembershipInvite)
			return memberEv(r, bob, carol, `{"membership":"invite"}`)
		}},
		{name: "below invite level", want: "member.invite.power", build: func(r *room) *event.PDU {
			r.standard()
			r.powerLevels(`{"invite":51,"users":{"@bob:b.example":50}}`)
			return memberEv(r, bob, carol, `{"membership":"invite"}`)
		}},
		{name: "at invite level", build: func(r *room) *event.PDU {
			r.standard()
			r.powerLevels(`{"invite":50,"users":{"@bob:b.example":50}}`)
			return memberEv(r, bob, carol, `{"membership":"invite"}`)
		}},
	})
}

func TestThirdPartyInvite(t *testing.T) {
	ok := &fakeVerifier{tpiOK: true}
	const tpiContent = `{"membership":"invite","third_party_invite":{"display_name":"c","signed":{"mxid":"@carol:c.example","token":"tok","signatures":{"id.example":{"ed25519:0":"sig"}}}}}`
	setup := func(r *room) {
		r.standard()
		r.set(r.ev(TypeThirdPartyInvite, bob, sk("tok"), `{"display_name":"c","key_validity_url":"https://id.example/v","public_key":"K1","public_keys":[{"public_key":"K2"},{"nope":1},{"public_key":"K3"}]}`))
	}
	withContent := func(content string) func(r *room) *event.PDU {
		return func(r *room) *event.PDU {
			setup(r)
			return memberEv(r, bob, carol, content)
		}
	}
	runCases(t, []ruleCase{
		{name: "allowed", verifier: ok, build: withContent(tpiContent)},
		{name: "no verifier", want: "member.third_party.signature", build: withContent(tpiContent)},
		{name: "bad signature", verifier: &fakeVerifier{}, want: "member.third_party.signature", build: withContent(tpiContent)},
		{name: "target banned", verifier: ok, want: "member.third_party.banned", build: func(r *room) *event.PDU {
			setup(r)
			r.member(carol, MembershipBan)
			return memberEv(r, bob, carol, tpiContent)
		}},
		{name: "no signed", verifier: ok, want: "member.third_party.signed", build: withContent(`{"membership":"invite","third_party_invite":{"display_name":"c"}}`)},
		{name: "third_party_invite not object", verifier: ok, want: "member.third_party.signed", build: withContent(`{"membership":"invite","third_party_invite":"x"}`)},
		{name: "signed without token", verifier: ok, want: "member.third_party.signed", build: withContent(`{"membership":"invite","third_party_invite":{"signed":{"mxid":"@carol:c.example"}}}`)},
		{name: "signed without mxid", verifier: ok, want: "member.third_party.signed", build: withContent(`{"membership":"invite","third_party_invite":{"signed":{"token":"tok"}}}`)},
		{name: "mxid mismatch", verifier: ok, want: "member.third_party.mxid", build: withContent(`{"membership":"invite","third_party_invite":{"signed":{"mxid":"@dave:a.example","token":"tok"}}}`)},
		{name: "unknown token", verifier: ok, want: "member.third_party.no_invite", build: withContent(`{"membership":"invite","third_party_invite":{"signed":{"mxid":"@carol:c.example","token":"other"}}}`)},
		{name: "sender did not send the 3pid invite", verifier: ok, want: "member.third_party.sender", build: func(r *room) *event.PDU {
			setup(r)
			return memberEv(r, alice, carol, tpiContent)
		}},
		{name: "sender need not be joined", verifier: ok, build: func(r *room) *event.PDU {
			setup(r)
			r.member(bob, MembershipLeave)
			return memberEv(r, bob, carol, tpiContent)
		}},
	})
	// The verifier receives every public key of the invite event.
	r := newRoom(10, "")
	setup(r)
	v := &fakeVerifier{tpiOK: true}
	if err := CheckWith(memberEv(r, bob, carol, tpiContent), r.state, v); err != nil {
		t.Fatal(err)
	}
	if got := v.gotKeys; len(got) != 3 || got[0] != "K1" || got[1] != "K2" || got[2] != "K3" {
		t.Fatalf("public keys %v", got)
	}
}

func TestLeave(t *testing.T) {
	runCases(t, []ruleCase{
		{name: "self leave joined", build: func(r *room) *event.PDU {
			r.standard()
			return memberEv(r, bob, bob, `{"membership":"leave"}`)
		}},
		{name: "reject invite", build: func(r *room) *event.PDU {
			r.standard().member(carol, MembershipInvite)
			return memberEv(r, carol, carol, `{"membership":"leave"}`)
		}},
		{name: "rescind knock", versions: versions(7, 12), build: func(r *room) *event.PDU {
			r.standard().member(carol, MembershipKnock)
			return memberEv(r, carol, carol, `{"membership":"leave"}`)
		}},
		{name: "self leave when not in room", want: "member.leave.self", build: func(r *room) *event.PDU {
			r.standard()
			return memberEv(r, carol, carol, `{"membership":"leave"}`)
		}},
		{name: "self leave when banned", want: "member.leave.self", build: func(r *room) *event.PDU {
			r.standard().member(carol, MembershipBan)
			return memberEv(r, carol, carol, `{"membership":"leave"}`)
		}},
		{name: "kick", build: func(r *room) *event.PDU {
			r.standard().member(carol, MembershipJoin)
			return memberEv(r, bob, carol, `{"membership":"leave"}`)
		}},
		{name: "kick by non-member", want: "member.leave.sender_not_joined", build: func(r *room) *event.PDU {
			r.standard().member(carol, MembershipJoin).member(bob, MembershipLeave)
			return memberEv(r, bob, carol, `{"membership":"leave"}`)
		}},
		{name: "kick below kick level", want: "member.leave.power", build: func(r *room) *event.PDU {
			r.standard().member(carol, MembershipJoin)
			r.powerLevels(`{"kick":51,"users":{"@bob:b.example":50}}`)
			return memberEv(r, bob, carol, `{"membership":"leave"}`)
		}},
		{name: "kick equal level", want: "member.leave.power", build: func(r *room) *event.PDU {
			r.standard().member(carol, MembershipJoin)
			r.powerLevels(`{"users":{"@bob:b.example":50,"@carol:c.example":50}}`)
			return memberEv(r, bob, carol, `{"membership":"leave"}`)
		}},
		{name: "unban", build: func(r *room) *event.PDU {
			r.standard().member(carol, MembershipBan)
			return memberEv(r, bob, carol, `{"membership":"leave"}`)
		}},
		{name: "unban below ban level", want: "member.leave.unban_power", build: func(r *room) *event.PDU {
			r.standard().member(carol, MembershipBan)
			r.powerLevels(`{"ban":60,"users":{"@bob:b.example":50}}`)
			return memberEv(r, bob, carol, `{"membership":"leave"}`)
		}},
		{name: "unban needs kick level too", want: "member.leave.power", build: func(r *room) *event.PDU {
			r.standard().member(carol, MembershipBan)
			r.powerLevels(`{"kick":60,"users":{"@bob:b.example":50}}`)
			return memberEv(r, bob, carol, `{"membership":"leave"}`)
		}},
		{name: "v12 nobody kicks a creator", versions: []int{12}, want: "member.leave.power", build: func(r *room) *event.PDU {
			*r = *newRoom(12, `"additional_creators":["@bob:b.example"]`)
			r.member(alice, MembershipJoin).member(bob, MembershipJoin).joinRule(JoinRulePublic)
			return memberEv(r, bob, alice, `{"membership":"leave"}`)
		}},
		{name: "creator kicks at 100 without PL event (v1-11)", versions: versions(1, 11), build: func(r *room) *event.PDU {
			r.member(alice, MembershipJoin).member(bob, MembershipJoin)
			return memberEv(r, alice, bob, `{"membership":"leave"}`)
		}},
		{name: "creator kicks without PL event (v12)", versions: []int{12}, build: func(r *room) *event.PDU {
			r.member(alice, MembershipJoin).member(bob, MembershipJoin)
			return memberEv(r, alice, bob, `{"membership":"leave"}`)
		}},
		{name: "non-creator cannot kick without PL event", want: "member.leave.power", build: func(r *room) *event.PDU {
			r.member(alice, MembershipJoin).member(bob, MembershipJoin).member(carol, MembershipJoin)
			return memberEv(r, bob, carol, `{"membership":"leave"}`)
		}},
	})
}

func TestBan(t *testing.T) {
	runCases(t, []ruleCase{
		{name: "ban", build: func(r *room) *event.PDU {
			r.standard()
			return memberEv(r, bob, carol, `{"membership":"ban"}`)
		}},
		{name: "ban by non-member", want: "member.ban.sender_not_joined", build: func(r *room) *event.PDU {
			r.standard().member(bob, MembershipLeave)
			return memberEv(r, bob, carol, `{"membership":"ban"}`)
		}},
		{name: "below ban level", want: "member.ban.power", build: func(r *room) *event.PDU {
			r.standard()
			r.powerLevels(`{"ban":51,"users":{"@bob:b.example":50}}`)
			return memberEv(r, bob, carol, `{"membership":"ban"}`)
		}},
		{name: "ban higher", want: "member.ban.power", build: func(r *room) *event.PDU {
			r.standard()
			return memberEv(r, bob, alice, `{"membership":"ban"}`)
		}},
		{name: "ban self at equal level", want: "member.ban.power", build: func(r *room) *event.PDU {
			r.standard()
			return memberEv(r, bob, bob, `{"membership":"ban"}`)
		}},
	})
}

func TestKnock(t *testing.T) {
	knock := func(rule, prior string) func(r *room) *event.PDU {
		return func(r *room) *event.PDU {
			r.standard().joinRule(rule)
			if prior != "" {
				r.member(carol, prior)
			}
			return memberEv(r, carol, carol, `{"membership":"knock"}`)
		}
	}
	runCases(t, []ruleCase{
		{name: "knock", versions: versions(7, 12), build: knock(JoinRuleKnock, "")},
		{name: "knock after leave", versions: versions(7, 12), build: knock(JoinRuleKnock, MembershipLeave)},
		{name: "knock on knock_restricted", versions: versions(10, 12), build: knock(JoinRuleKnockRestricted, "")},
		{name: "knock on knock_restricted before v10", versions: versions(7, 9), want: "member.knock.rule", build: knock(JoinRuleKnockRestricted, "")},
		{name: "knock on public", versions: versions(7, 12), want: "member.knock.rule", build: knock(JoinRulePublic, "")},
		{name: "knock on invite", versions: versions(7, 12), want: "member.knock.rule", build: knock(JoinRuleInvite, "")},
		{name: "knock while banned", versions: versions(7, 12), want: "member.knock.state", build: knock(JoinRuleKnock, MembershipBan)},
		{name: "knock while invited", versions: versions(7, 12), want: "member.knock.state", build: knock(JoinRuleKnock, MembershipInvite)},
		{name: "knock while joined", versions: versions(7, 12), want: "member.knock.state", build: knock(JoinRuleKnock, MembershipJoin)},
		{name: "knock for someone else", versions: versions(7, 12), want: "member.knock.sender", build: func(r *room) *event.PDU {
			r.standard().joinRule(JoinRuleKnock)
			return memberEv(r, dave, carol, `{"membership":"knock"}`)
		}},
	})
}
