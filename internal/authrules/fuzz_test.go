package authrules

import (
	"testing"

	"conclave/internal/event"
)

// FuzzCheck feeds arbitrary content to member and power levels events (and
// to the current power levels) in every room version. Check must never
// panic, and the cached and uncached paths must agree whenever the current
// power levels are valid.
func FuzzCheck(f *testing.F) {
	seeds := []string{
		`{"membership":"join"}`,
		`{"membership":"invite","third_party_invite":{"signed":{"mxid":"@carol:c.example","token":"tok"}}}`,
		`{"membership":"join","join_authorised_via_users_server":"@bob:b.example"}`,
		`{"users":{"@bob:b.example":"50"},"ban":1e400,"events":{"x":[]}}`,
		`{"users":{"@bob:b.example":100},"notifications":{"room":"1"}}`,
		`{"membership":"\u006a`, `[`, `{"a":}`, `{"membership":"ban",}`, `nul`, ``,
	}
	for i, s := range seeds {
		f.Add(uint8(i), uint8(i*7), []byte(s), []byte(`{"users":{"@bob:b.example":50}}`))
	}
	verifier := &fakeVerifier{signedBy: map[string]bool{"b.example": true}, tpiOK: true}
	f.Fuzz(func(t *testing.T, kind, ver uint8, content, currentPL []byte) {
		n := 1 + int(ver)%12
		r := newRoom(n, `"additional_creators":["@bob:b.example"]`)
		r.member(alice, MembershipJoin).member(bob, MembershipJoin).joinRule(JoinRuleRestricted)
		r.set(r.ev(TypeMember, carol, sk(carol), string(content))) // arbitrary state content too
		r.set(r.ev(TypeThirdPartyInvite, bob, sk("tok"), string(content)))
		r.set(r.ev(TypePowerLevels, alice, sk(""), string(currentPL)))
		var ev *event.PDU
		switch kind % 4 {
		case 0:
			ev = memberEv(r, carol, carol, string(content))
		case 1:
			ev = memberEv(r, bob, carol, string(content))
		case 2:
			ev = r.ev(TypePowerLevels, bob, sk(""), string(content))
		case 3:
			ev = r.ev(TypeCreate, alice, sk(""), string(content))
			ev.PrevEvents = nil
			if r.v.RoomIDFromCreateEvent {
				ev.RoomID = ""
			}
		}
		err := CheckWith(ev, r.state, verifier)
		_ = Needed(r.v, ev.Type, ev.StateKey, ev.Sender, ev.Content)
		_, _ = Membership(ev)
		_ = Creators(ev)
		if pl, perr := ParsePowerLevels(r.v, currentPL, r.create); perr == nil {
			err2 := CheckWith(ev, cachedState{r.state, pl}, verifier)
			if ruleOf(err) != ruleOf(err2) {
				t.Fatalf("v%d: uncached %v, cached %v", n, err, err2)
			}
			_ = pl.UserLevel(bob)
		}
		if pl, perr := ParsePowerLevels(r.v, content, r.create); perr == nil {
			_ = pl.UserLevel(carol)
			_ = pl.EventLevel("x", true)
		}
	})
}
