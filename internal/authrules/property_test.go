package authrules

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"conclave/internal/event"
)

// randJSONValue produces a random JSON value text (valid JSON).
func randJSONValue(rng *rand.Rand, depth int) string {
	switch k := rng.IntN(9); {
	case k == 0 && depth < 3:
		return randJSONObject(rng, depth+1)
	case k == 1 && depth < 3:
		n := rng.IntN(4)
		parts := make([]string, n)
		for i := range parts {
			parts[i] = randJSONValue(rng, depth+1)
		}
		return "[" + strings.Join(parts, " , ") + "]"
	case k == 2:
		return randJSONString(rng)
	case k == 3:
		return []string{"true", "false", "null"}[rng.IntN(3)]
	case k == 4:
		return fmt.Sprint(rng.Float64() * 1000)
	case k == 5:
		return []string{`"50"`, `" +7 "`, `"-0"`, `"1e2"`, "1e400", "9007199254740992", "-1", "100"}[rng.IntN(8)]
	default:
		return fmt.Sprint(rng.IntN(201) - 100)
	}
}

var keyPool = []string{"membership", "m.federate", "users", "events", "ban", "kick", "invite", "@bob:b.example", "a\"b", "é", "x"}

func randJSONString(rng *rand.Rand) string {
	s := keyPool[rng.IntN(len(keyPool))]
	b, _ := json.Marshal(s)
	if rng.IntN(4) == 0 {
		// Spell one character as a \u escape.
		return `"\u00` + fmt.Sprintf("%02x", s[0]) + string(b[2:])
	}
	return string(b)
}

func randJSONObject(rng *rand.Rand, depth int) string {
	n := rng.IntN(5)
	parts := make([]string, n)
	for i := range parts {
		ws := []string{"", " ", "\n\t"}[rng.IntN(3)]
		parts[i] = ws + randJSONString(rng) + ws + ":" + ws + randJSONValue(rng, depth) + ws
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// The allocation-free reader must agree with encoding/json on valid JSON.
func TestLookupAgreesWithEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20000; i++ {
		obj := randJSONObject(rng, 0)
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(obj), &m); err != nil {
			t.Fatalf("generator produced invalid JSON %s: %v", obj, err)
		}
		for _, key := range keyPool {
			raw, found, err := lookup([]byte(obj), key)
			if err != nil {
				t.Fatalf("lookup(%s, %q): %v", obj, key, err)
			}
			want, ok := m[key]
			if found != ok {
				t.Fatalf("lookup(%s, %q) found=%v, encoding/json %v", obj, key, found, ok)
			}
			if found && string(raw) != string(want) {
				t.Fatalf("lookup(%s, %q) = %s, encoding/json %s", obj, key, raw, want)
			}
			if found {
				var s string
				sErr := json.Unmarshal(want, &s)
				if want[0] != '"' {
					sErr = fmt.Errorf("not a string") // Unmarshal accepts null into a string
				}
				got, isStr := stringValue(raw)
				if isStr != (sErr == nil) || (isStr && got != s) {
					t.Fatalf("stringValue(%s) = %q,%v want %q,%v", raw, got, isStr, s, sErr)
				}
			}
		}
	}
}

// The lazy level reader and ParsePowerLevels must agree on every valid
// power levels content.
func TestLevelSourceAgreesWithParse(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	users := []string{alice, bob, carol, dave}
	types := []string{"m.room.name", "m.room.message", "x"}
	checked := 0
	for i := 0; i < 20000; i++ {
		n := 1 + rng.IntN(12)
		r := newRoom(n, `"additional_creators":["@bob:b.example"]`)
		var parts []string
		for _, k := range namedKeys {
			if rng.IntN(2) == 0 {
				parts = append(parts, fmt.Sprintf("%q:%s", k, randLevel(rng)))
			}
		}
		var ue []string
		for _, u := range users {
			if rng.IntN(2) == 0 {
				ue = append(ue, fmt.Sprintf("%q:%s", u, randLevel(rng)))
			}
		}
		parts = append(parts, `"users":{`+strings.Join(ue, ",")+`}`)
		parts = append(parts, fmt.Sprintf(`"events":{"m.room.name":%s,"x":%s}`, randLevel(rng), randLevel(rng)))
		content := []byte("{" + strings.Join(parts, ",") + "}")
		pl, err := ParsePowerLevels(r.v, content, r.create)
		if err != nil {
			continue
		}
		checked++
		ls := levelSource{rv: r.v, create: r.create, content: content}
		for _, u := range users {
			got, err := ls.userLevel(u)
			if err != nil || got != pl.UserLevel(u) {
				t.Fatalf("v%d %s user %s: lazy %d (%v), parsed %d", n, content, u, got, err, pl.UserLevel(u))
			}
		}
		for j := range numNamed {
			got, err := ls.named(j)
			if err != nil || got != pl.named[j] {
				t.Fatalf("v%d %s %s: lazy %d (%v), parsed %d", n, content, namedKeys[j], got, err, pl.named[j])
			}
		}
		for _, typ := range types {
			for _, st := range []bool{false, true} {
				got, err := ls.eventLevel(typ, st)
				if err != nil || got != pl.EventLevel(typ, st) {
					t.Fatalf("v%d %s event %s: lazy %d (%v), parsed %d", n, content, typ, got, err, pl.EventLevel(typ, st))
				}
			}
		}
	}
	if checked < 1000 {
		t.Fatalf("only %d valid contents generated", checked)
	}
}

func randLevel(rng *rand.Rand) string {
	switch rng.IntN(6) {
	case 0:
		return fmt.Sprintf(`"%d"`, rng.IntN(101))
	case 1:
		return fmt.Sprintf("%d.5", rng.IntN(101))
	case 2:
		return "true"
	default:
		return fmt.Sprint(rng.IntN(101))
	}
}

// simRoom is a room with users on several servers and random power levels,
// used to run random membership sequences.
type simRoom struct {
	*room
	users []string
}

func newSimRoom(rng *rand.Rand) *simRoom {
	n := 1 + rng.IntN(12)
	r := newRoom(n, "")
	users := []string{alice, bob, carol, dave, "@erin:e.example", "@frank:b.example"}
	r.member(alice, MembershipJoin)
	var ue []string
	for _, u := range users[1:] {
		r.member(u, []string{MembershipJoin, MembershipJoin, MembershipInvite, MembershipLeave, MembershipBan, MembershipKnock}[rng.IntN(6)])
		if rng.IntN(3) > 0 {
			ue = append(ue, fmt.Sprintf("%q:%d", u, rng.IntN(101)))
		}
	}
	if !r.v.PrivilegedCreators {
		ue = append(ue, fmt.Sprintf("%q:100", alice))
	}
	r.powerLevels(fmt.Sprintf(`{"kick":%d,"ban":%d,"invite":%d,"users":{%s}}`, rng.IntN(101), rng.IntN(101), rng.IntN(101), strings.Join(ue, ",")))
	rules := []string{JoinRulePublic, JoinRuleInvite, JoinRuleKnock, JoinRuleRestricted, JoinRuleKnockRestricted}
	r.joinRule(rules[rng.IntN(len(rules))])
	return &simRoom{room: r, users: users}
}

func (s *simRoom) pl(t *testing.T) *PowerLevels {
	pl, err := ParsePowerLevels(s.v, plContent(s.state), s.create)
	if err != nil {
		t.Fatal(err)
	}
	return pl
}

// Random membership sequences: invariants that must hold for every event
// the rules allow, whatever the version, join rule and power levels.
func TestPropertyMembershipSequences(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	memberships := []string{MembershipJoin, MembershipInvite, MembershipLeave, MembershipBan, MembershipKnock}
	allowed := map[string]int{}
	signedByAll := &fakeVerifier{signedBy: map[string]bool{"a.example": true, "b.example": true, "c.example": true, "e.example": true}}
	for room := 0; room < 300; room++ {
		s := newSimRoom(rng)
		for step := 0; step < 60; step++ {
			sender := s.users[rng.IntN(len(s.users))]
			target := sender
			if rng.IntN(2) == 0 {
				target = s.users[rng.IntN(len(s.users))]
			}
			m := memberships[rng.IntN(len(memberships))]
			content := `{"membership":"` + m + `"}`
			if m == MembershipJoin && rng.IntN(3) == 0 {
				content = `{"membership":"join","join_authorised_via_users_server":"` + s.users[rng.IntN(len(s.users))] + `"}`
			}
			ev := memberEv(s.room, sender, target, content)
			pl := s.pl(t)
			before := membershipIn(s.state, target)
			err := CheckWith(ev, s.state, signedByAll)
			if err2 := CheckWith(ev, cachedState{s.state, pl}, signedByAll); ruleOf(err) != ruleOf(err2) {
				t.Fatalf("cached and uncached disagree: %v / %v", err, err2)
			}
			if err != nil {
				continue
			}
			allowed[m]++
			sl, tl := pl.UserLevel(sender), pl.UserLevel(target)
			switch {
			case m == MembershipJoin:
				if before == MembershipBan {
					t.Fatalf("v%d: banned %s joined", s.n, target)
				}
				if sender != target {
					t.Fatalf("v%d: %s joined %s", s.n, sender, target)
				}
			case m == MembershipLeave && sender != target:
				if sl < pl.Kick() || tl >= sl {
					t.Fatalf("v%d: %s (level %d) kicked %s (level %d) with kick level %d", s.n, sender, sl, target, tl, pl.Kick())
				}
				if before == MembershipBan && sl < pl.Ban() {
					t.Fatalf("v%d: unban below ban level", s.n)
				}
			case m == MembershipBan:
				if sl < pl.Ban() || tl >= sl {
					t.Fatalf("v%d: %s (level %d) banned %s (level %d)", s.n, sender, sl, target, tl)
				}
			case m == MembershipInvite:
				if before == MembershipJoin || before == MembershipBan || sl < pl.Invite() {
					t.Fatalf("v%d: bad invite of %s (%s)", s.n, target, before)
				}
			case m == MembershipKnock:
				if !s.v.Knocking || sender != target || before == MembershipBan || before == MembershipJoin || before == MembershipInvite {
					t.Fatalf("v%d: bad knock", s.n)
				}
			}
			s.set(ev)
		}
	}
	for _, m := range memberships {
		if allowed[m] == 0 {
			t.Errorf("no %s was ever allowed: the generator is too weak", m)
		}
	}
}

// Random power level changes: an allowed change never touches a user at or
// above the sender (other than the sender) and never grants more than the
// sender has.
func TestPropertyPowerLevelChanges(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	allowedCount := 0
	for i := 0; i < 5000; i++ {
		s := newSimRoom(rng)
		old := s.pl(t)
		sender := s.users[rng.IntN(len(s.users))]
		s.member(sender, MembershipJoin)
		var ue []string
		for _, u := range s.users {
			if s.v.PrivilegedCreators && u == alice {
				continue
			}
			if rng.IntN(4) > 0 {
				ue = append(ue, fmt.Sprintf("%q:%d", u, rng.IntN(101)))
			}
		}
		content := fmt.Sprintf(`{"kick":%d,"ban":%d,"users":{%s}}`, rng.IntN(101), rng.IntN(101), strings.Join(ue, ","))
		ev := newPL(s.room, sender, content)
		if Check(ev, s.state) != nil {
			continue
		}
		allowedCount++
		next, err := ParsePowerLevels(s.v, ev.Content, s.create)
		if err != nil {
			t.Fatal(err)
		}
		sl := old.UserLevel(sender)
		for _, u := range s.users {
			o, n := old.UserLevel(u), next.UserLevel(u)
			if o == n {
				continue
			}
			if u != sender && o >= sl {
				t.Fatalf("v%d: %s (level %d) changed %s from %d to %d", s.n, sender, sl, u, o, n)
			}
			if _, explicit := next.users[u]; explicit && n > sl {
				t.Fatalf("v%d: %s (level %d) raised %s to %d", s.n, sender, sl, u, n)
			}
		}
		if (next.Kick() != old.Kick() && (next.Kick() > sl || old.Kick() > sl)) ||
			(next.Ban() != old.Ban() && (next.Ban() > sl || old.Ban() > sl)) {
			t.Fatalf("v%d: %s (level %d) changed kick/ban beyond own level", s.n, sender, sl)
		}
	}
	if allowedCount < 100 {
		t.Fatalf("only %d allowed changes", allowedCount)
	}
}

// Monotonicity: raising the sender's level never turns an allowed event
// into a rejected one, for ordinary events, kicks and bans.
func TestPropertyMonotonicInSenderLevel(t *testing.T) {
	// Exhaustive over a grid of required levels and sender levels: an
	// event is allowed exactly when the sender reaches the required level
	// (and, for kicks and bans, outranks the target at 30), so allowance is
	// monotonic in the sender's level.
	for _, n := range allVersions {
		for req := 0; req <= 100; req += 25 {
			for level := 0; level <= 100; level += 5 {
				r := newRoom(n, "")
				r.member(alice, MembershipJoin).member(bob, MembershipJoin).member(carol, MembershipJoin)
				r.powerLevels(fmt.Sprintf(`{"events_default":%d,"state_default":%d,"kick":%d,"ban":%d,"users":{"@bob:b.example":%d,"@carol:c.example":30}}`, req, req, req, req, level))
				for _, ev := range []*event.PDU{
					r.ev("m.room.message", bob, nil, `{}`),
					r.ev("m.room.name", bob, sk(""), `{}`),
					memberEv(r, bob, carol, `{"membership":"leave"}`),
					memberEv(r, bob, carol, `{"membership":"ban"}`),
				} {
					ok := Check(ev, r.state) == nil
					wantByRule := level >= req
					if ev.Type == TypeMember {
						wantByRule = wantByRule && level > 30
					}
					if ok != wantByRule {
						t.Fatalf("v%d %s level %d req %d: allowed=%v", n, ev.Type, level, req, ok)
					}
				}
			}
		}
	}
}
