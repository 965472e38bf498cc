package authrules

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"conclave/internal/event"
)

func TestNeeded(t *testing.T) {
	keys := func(ks []StateKey) string { return fmt.Sprint(ks) }
	for _, n := range allVersions {
		v := version(n)
		base := []StateKey{{TypeCreate, ""}, {TypePowerLevels, ""}, {TypeMember, bob}}
		if v.RoomIDFromCreateEvent {
			base = base[1:]
		}
		if got := Needed(v, TypeCreate, sk(""), alice, []byte(`{}`)); got != nil {
			t.Errorf("v%d create: %v", n, got)
		}
		if got := Needed(v, "m.room.message", nil, bob, []byte(`{}`)); keys(got) != keys(base) {
			t.Errorf("v%d message: %v", n, got)
		}
		// Self-join: target == sender is listed once, plus join rules.
		want := append(slices.Clone(base), StateKey{TypeJoinRules, ""})
		if got := Needed(v, TypeMember, sk(bob), bob, []byte(`{"membership":"join"}`)); keys(got) != keys(want) {
			t.Errorf("v%d join: %v want %v", n, got, want)
		}
		// Restricted join: the authorising user's membership from v8.
		got := Needed(v, TypeMember, sk(bob), bob, []byte(`{"membership":"join","join_authorised_via_users_server":"@carol:c.example"}`))
		wantR := slices.Clone(want)
		if v.RestrictedJoins {
			wantR = append(wantR, StateKey{TypeMember, carol})
		}
		if keys(got) != keys(wantR) {
			t.Errorf("v%d restricted join: %v want %v", n, got, wantR)
		}
		// Invite with a third-party invite.
		got = Needed(v, TypeMember, sk(carol), bob, []byte(`{"membership":"invite","third_party_invite":{"signed":{"token":"tok","mxid":"@carol:c.example"}}}`))
		wantI := append(slices.Clone(base), StateKey{TypeMember, carol}, StateKey{TypeJoinRules, ""}, StateKey{TypeThirdPartyInvite, "tok"})
		if keys(got) != keys(wantI) {
			t.Errorf("v%d 3pid invite: %v want %v", n, got, wantI)
		}
		// Leave/ban: no join rules.
		got = Needed(v, TypeMember, sk(carol), bob, []byte(`{"membership":"ban"}`))
		wantB := append(slices.Clone(base), StateKey{TypeMember, carol})
		if keys(got) != keys(wantB) {
			t.Errorf("v%d ban: %v want %v", n, got, wantB)
		}
		got = Needed(v, TypeMember, sk(carol), carol, []byte(`{"membership":"knock"}`))
		if !slices.Contains(got, StateKey{TypeJoinRules, ""}) {
			t.Errorf("v%d knock needs join rules: %v", n, got)
		}
	}
}

// authRoom builds a room and returns the auth events a message from bob
// should cite.
func authRoom(n int) (*room, []*event.PDU) {
	r := newRoom(n, "").standard()
	var aes []*event.PDU
	for _, k := range Needed(r.v, "m.room.message", nil, bob, nil) {
		if e := r.state[k]; e != nil {
			aes = append(aes, e)
		}
	}
	return r, aes
}

func ids(aes []*event.PDU) []string {
	var out []string
	for _, e := range aes {
		out = append(out, e.EventID)
	}
	return out
}

func TestCheckAuthEvents(t *testing.T) {
	for _, n := range allVersions {
		t.Run(fmt.Sprint("v", n), func(t *testing.T) {
			check := func(name, want string, mutate func(r *room, ev *event.PDU, aes []*event.PDU) []*event.PDU) {
				t.Helper()
				r, aes := authRoom(n)
				ev := r.ev("m.room.message", bob, nil, `{}`)
				aes = mutate(r, ev, aes)
				if ev.AuthEvents == nil {
					ev.AuthEvents = ids(aes)
				}
				got := ruleOf(CheckAgainstAuthEvents(ev, aes, r.create, nil))
				if got != want {
					t.Errorf("%s: got %q want %q", name, got, want)
				}
			}
			check("valid", "", func(_ *room, _ *event.PDU, aes []*event.PDU) []*event.PDU { return aes })
			check("unexpected join rules", "auth_events.unexpected", func(r *room, _ *event.PDU, aes []*event.PDU) []*event.PDU {
				return append(aes, r.state[StateKey{TypeJoinRules, ""}])
			})
			check("another user's membership", "auth_events.unexpected", func(r *room, _ *event.PDU, aes []*event.PDU) []*event.PDU {
				return append(aes, r.state[StateKey{TypeMember, alice}])
			})
			check("duplicate type/state_key", "auth_events.duplicate", func(r *room, _ *event.PDU, aes []*event.PDU) []*event.PDU {
				dup := *r.state[StateKey{TypePowerLevels, ""}]
				dup.EventID = "$pl2"
				return append(aes, &dup)
			})
			check("duplicate id", "auth_events.duplicate", func(_ *room, ev *event.PDU, aes []*event.PDU) []*event.PDU {
				ev.AuthEvents = append(ids(aes), aes[0].EventID)
				return aes
			})
			check("missing (unknown or rejected)", "auth_events.missing", func(_ *room, ev *event.PDU, aes []*event.PDU) []*event.PDU {
				ev.AuthEvents = append(ids(aes), "$rejected")
				return aes
			})
			check("passed event not named", "auth_events.mismatch", func(_ *room, ev *event.PDU, aes []*event.PDU) []*event.PDU {
				ev.AuthEvents = ids(aes)[1:]
				return aes
			})
			check("other room", "auth_events.room_id", func(_ *room, _ *event.PDU, aes []*event.PDU) []*event.PDU {
				pl := *aes[len(aes)-1]
				pl.RoomID = "!other:x.example"
				aes[len(aes)-1] = &pl
				return aes
			})
			check("non-state auth event", "auth_events.unexpected", func(r *room, _ *event.PDU, aes []*event.PDU) []*event.PDU {
				return append(aes, r.ev("m.room.message", bob, nil, `{}`))
			})
			if n < 12 {
				check("no create", "auth_events.no_create", func(_ *room, _ *event.PDU, aes []*event.PDU) []*event.PDU {
					return aes[1:]
				})
			} else {
				check("create cited", "auth_events.unexpected", func(r *room, _ *event.PDU, aes []*event.PDU) []*event.PDU {
					return append(aes, r.create)
				})
				// Without the create event v12 cannot authorise anything.
				r, aes := authRoom(n)
				ev := r.ev("m.room.message", bob, nil, `{}`)
				ev.AuthEvents = ids(aes)
				if got := ruleOf(CheckAgainstAuthEvents(ev, aes, nil, nil)); got != "create.missing" {
					t.Errorf("v12 without create: %q", got)
				}
			}
			// The rules then run against the auth events' state: without
			// bob's membership he is not joined.
			check("sender membership absent", "sender.not_joined", func(_ *room, _ *event.PDU, aes []*event.PDU) []*event.PDU {
				var out []*event.PDU
				for _, e := range aes {
					if e.Type != TypeMember {
						out = append(out, e)
					}
				}
				return out
			})
		})
	}
	// A create event needs no auth events check.
	r := newRoom(10, "")
	if err := CheckAuthEvents(r.create, nil); err != nil {
		t.Fatal(err)
	}
}

func TestMembershipAndJoinRuleHelpers(t *testing.T) {
	r := newRoom(10, "")
	for content, want := range map[string]string{
		`{"membership":"join"}`:                     "join",
		`{"membership":"\u006aoin"}`:                "join",
		`{"membership":"custom"}`:                   "custom",
		`{"membership":"leave","membership":"ban"}`: "ban", // last wins, like encoding/json
	} {
		got, err := Membership(r.ev(TypeMember, bob, sk(bob), content))
		if err != nil || got != want {
			t.Errorf("Membership(%s) = %q, %v", content, got, err)
		}
	}
	for _, bad := range []string{`{}`, `{"membership":1}`, `[]`, `{"membership":"join"`} {
		if _, err := Membership(r.ev(TypeMember, bob, sk(bob), bad)); err == nil {
			t.Errorf("Membership(%s) should fail", bad)
		}
	}
	if m, err := Membership(nil); m != "" || err != nil {
		t.Error("nil member event")
	}
	if jr, err := JoinRule(r.ev(TypeJoinRules, alice, sk(""), `{"join_rule":"knock_restricted","allow":[]}`)); jr != JoinRuleKnockRestricted || err != nil {
		t.Error("JoinRule", jr, err)
	}
	if jr, err := JoinRule(r.ev(TypeJoinRules, alice, sk(""), `{}`)); jr != "" || err != nil {
		t.Error("JoinRule absent", jr, err)
	}
	if _, err := JoinRule(r.ev(TypeJoinRules, alice, sk(""), `{"join_rule":[]}`)); err == nil {
		t.Error("JoinRule non-string")
	}
}

func TestUserIDValidation(t *testing.T) {
	for id, want := range map[string]bool{
		"@a:b":                 true,
		"@:b":                  true, // historical: empty localpart
		"@A B!:b.example:8448": true,
		"@a:1.2.3.4":           true,
		"@a:[::1]:80":          true,
		"@a:[1234:5678::abcd]": true,
		"a:b":                  false,
		"@ab":                  false,
		"@a:":                  false,
		"@a:b_c":               false,
		"@a:b:123456":          false,
		"@a:b:":                false,
		"@a:[::1":              false,
		"@a:[::1]x":            false,
		"@a\x00:b":             false,
		"@a\xff:b":             false,
		"@" + strings.Repeat("a", 250) + ":b.example": false, // > 255 bytes
	} {
		if got := validUserID(id); got != want {
			t.Errorf("validUserID(%q) = %v", id, got)
		}
	}
}
