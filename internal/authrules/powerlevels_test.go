package authrules

import (
	"math"
	"testing"

	"conclave/internal/event"
)

// plRoom: alice creator (100, or creator in v12), bob 50, carol 10, all
// joined; current power levels as given (users for alice added before v12).
func plRoom(r *room, extra string) {
	r.member(alice, MembershipJoin).member(bob, MembershipJoin).member(carol, MembershipJoin).joinRule(JoinRulePublic)
	users := `"@bob:b.example":50,"@carol:c.example":10`
	if !r.v.PrivilegedCreators {
		users = `"@alice:a.example":100,` + users
	}
	c := `{"users":{` + users + `}`
	if extra != "" {
		c += "," + extra
	}
	r.powerLevels(c + "}")
}

func newPL(r *room, sender, content string) *event.PDU {
	return r.ev(TypePowerLevels, sender, sk(""), content)
}

func TestPowerLevelsValidity(t *testing.T) {
	first := func(content string) func(r *room) *event.PDU {
		return func(r *room) *event.PDU {
			r.member(alice, MembershipJoin)
			return newPL(r, alice, content)
		}
	}
	runCases(t, []ruleCase{
		{name: "first PL event", build: first(`{"users":{"@bob:b.example":100}}`)},
		{name: "first PL with everything", build: first(`{"ban":50,"kick":50,"redact":50,"invite":0,"events_default":0,"state_default":50,"users_default":0,"events":{"m.room.name":50},"notifications":{"room":50}}`)},
		{name: "users absent is fine", build: first(`{}`)},
		{name: "users not object", want: "power_levels.users", build: first(`{"users":[]}`)},
		{name: "users null", want: "power_levels.users", build: first(`{"users":null}`)},
		{name: "users key not a user ID", want: "power_levels.users", build: first(`{"users":{"bob":10}}`)},
		{name: "users key bad server", want: "power_levels.users", build: first(`{"users":{"@bob:":10}}`)},
		{name: "users historical localpart", build: first(`{"users":{"@Bob Smith!:b.example:8448":10}}`)},
		{name: "users value bool", want: "power_levels.users", build: first(`{"users":{"@bob:b.example":true}}`)},
		{name: "users stringy before v10", versions: versions(1, 9), build: first(`{"users":{"@bob:b.example":" -010 "}}`)},
		{name: "users stringy v10+", versions: versions(10, 12), want: "power_levels.users", build: first(`{"users":{"@bob:b.example":"10"}}`)},
		{name: "users non-numeric string", versions: versions(1, 9), want: "power_levels.users", build: first(`{"users":{"@bob:b.example":"ten"}}`)},
		{name: "users float string", versions: versions(1, 9), want: "power_levels.users", build: first(`{"users":{"@bob:b.example":"1.5"}}`)},
		{name: "users float before v6", versions: versions(1, 5), build: first(`{"users":{"@bob:b.example":10.5}}`)},
		{name: "users float v6+", versions: versions(6, 12), want: "power_levels.users", build: first(`{"users":{"@bob:b.example":10.5}}`)},
		{name: "users beyond double range before v6", versions: versions(1, 5), want: "power_levels.float_range", build: first(`{"users":{"@bob:b.example":1e400}}`)},
		{name: "ban beyond double range before v6", versions: versions(1, 5), want: "power_levels.float_range", build: first(`{"ban":-1e999}`)},
		{name: "users beyond canonical range v6+", versions: versions(6, 12), want: "power_levels.users", build: first(`{"users":{"@bob:b.example":9007199254740992}}`)},
		{name: "ban string before v10", versions: versions(1, 9), build: first(`{"ban":"50"}`)},
		{name: "ban string v10+", versions: versions(10, 12), want: "power_levels.not_integer", build: first(`{"ban":"50"}`)},
		{name: "ban garbage ignored before v10", versions: versions(1, 9), build: first(`{"ban":{}}`)},
		{name: "state_default null v10+", versions: versions(10, 12), want: "power_levels.not_integer", build: first(`{"state_default":null}`)},
		{name: "events not object v10+", versions: versions(10, 12), want: "power_levels.not_integer", build: first(`{"events":[]}`)},
		{name: "events value string v10+", versions: versions(10, 12), want: "power_levels.not_integer", build: first(`{"events":{"m.room.name":"50"}}`)},
		{name: "events value string before v10", versions: versions(1, 9), build: first(`{"events":{"m.room.name":"50"}}`)},
		{name: "notifications value v10+", versions: versions(10, 12), want: "power_levels.not_integer", build: first(`{"notifications":{"room":1.5}}`)},
		{name: "notifications not object v10+", versions: versions(10, 12), want: "power_levels.not_integer", build: first(`{"notifications":true}`)},
		{name: "content not object", want: "power_levels.content", build: first(`[]`)},
		{name: "v12 creator listed", versions: []int{12}, want: "power_levels.creator_listed", build: first(`{"users":{"@alice:a.example":100}}`)},
		{name: "v12 additional creator listed", versions: []int{12}, want: "power_levels.creator_listed", build: func(r *room) *event.PDU {
			*r = *newRoom(12, `"additional_creators":["@bob:b.example"]`)
			r.member(alice, MembershipJoin)
			return newPL(r, alice, `{"users":{"@bob:b.example":0}}`)
		}},
		{name: "v11 creator may be listed", versions: []int{11}, build: first(`{"users":{"@alice:a.example":100}}`)},
	})
}

func TestPowerLevelsChanges(t *testing.T) {
	change := func(sender, current, next string) func(r *room) *event.PDU {
		return func(r *room) *event.PDU {
			plRoom(r, current)
			users := `"@bob:b.example":50,"@carol:c.example":10`
			if !r.v.PrivilegedCreators {
				users = `"@alice:a.example":100,` + users
			}
			c := `{"users":{` + users + `}`
			if next != "" {
				c += "," + next
			}
			return newPL(r, sender, c+"}")
		}
	}
	changeUsers := func(sender, users string) func(r *room) *event.PDU {
		return func(r *room) *event.PDU {
			plRoom(r, "")
			u := users
			if !r.v.PrivilegedCreators {
				u = `"@alice:a.example":100,` + u
			}
			return newPL(r, sender, `{"users":{`+u+`}}`)
		}
	}
	runCases(t, []ruleCase{
		{name: "no-op by bob", build: change(bob, "", "")},
		{name: "carol below state_default", want: "event.power", build: change(carol, "", "")},
		{name: "set ban to own level", build: change(bob, "", `"ban":50`)},
		{name: "set ban above own level", want: "power_levels.named_new", build: change(bob, "", `"ban":51`)},
		{name: "lower ban that is above sender", want: "power_levels.named_current", build: change(bob, `"ban":60`, `"ban":40`)},
		{name: "remove ban that is above sender", want: "power_levels.named_current", build: change(bob, `"ban":60`, ``)},
		{name: "unchanged high ban is fine", build: change(bob, `"ban":60`, `"ban":60`)},
		{name: "stringy equal counts as unchanged", versions: versions(1, 9), build: change(bob, `"ban":60`, `"ban":"60"`)},
		{name: "add events entry at level", build: change(bob, "", `"events":{"m.room.name":50}`)},
		{name: "add events entry above", want: "power_levels.events_new", build: change(bob, "", `"events":{"m.room.name":51}`)},
		{name: "change events entry from above", want: "power_levels.events_current", build: change(bob, `"events":{"m.room.name":51}`, `"events":{"m.room.name":0}`)},
		{name: "remove events entry from above", want: "power_levels.events_current", build: change(bob, `"events":{"m.room.name":51}`, ``)},
		{name: "keep events entry above", build: change(bob, `"events":{"m.room.name":51}`, `"events":{"m.room.name":51,"m.room.topic":0}`)},
		{name: "notifications above v6+", versions: versions(6, 12), want: "power_levels.notifications_new", build: change(bob, "", `"notifications":{"room":60}`)},
		{name: "notifications from above v6+", versions: versions(6, 12), want: "power_levels.notifications_current", build: change(bob, `"notifications":{"room":60}`, ``)},
		{name: "notifications unchecked before v6", versions: versions(1, 5), build: change(bob, "", `"notifications":{"room":60}`)},
		{name: "promote carol to own level", build: changeUsers(bob, `"@bob:b.example":50,"@carol:c.example":50`)},
		{name: "promote carol above own level", want: "power_levels.users_new", build: changeUsers(bob, `"@bob:b.example":50,"@carol:c.example":51`)},
		{name: "add dave at own level", build: changeUsers(bob, `"@bob:b.example":50,"@carol:c.example":10,"@dave:a.example":50`)},
		{name: "demote carol", build: changeUsers(bob, `"@bob:b.example":50,"@carol:c.example":0`)},
		{name: "remove carol", build: changeUsers(bob, `"@bob:b.example":50`)},
		{name: "demote self", build: changeUsers(bob, `"@bob:b.example":20,"@carol:c.example":10`)},
		{name: "remove self", build: changeUsers(bob, `"@carol:c.example":10`)},
		{name: "promote self", want: "power_levels.users_new", build: changeUsers(bob, `"@bob:b.example":51,"@carol:c.example":10`)},
		{name: "demote peer at equal level", want: "power_levels.users_current", build: func(r *room) *event.PDU {
			plRoom(r, "")
			r.powerLevels(`{"users":{"@alice:a.example":100,"@bob:b.example":50,"@dave:a.example":50}}`)
			if r.v.PrivilegedCreators {
				r.powerLevels(`{"users":{"@bob:b.example":50,"@dave:a.example":50}}`)
			}
			r.member(dave, MembershipJoin)
			return newPL(r, bob, `{"users":{"@bob:b.example":50}}`)
		}},
		{name: "v1-11 bob cannot demote alice", versions: versions(1, 11), want: "power_levels.users_current", build: func(r *room) *event.PDU {
			plRoom(r, "")
			return newPL(r, bob, `{"users":{"@bob:b.example":50,"@carol:c.example":10}}`)
		}},
		{name: "v12 creator can set anything", versions: []int{12}, build: changeUsers(alice, `"@bob:b.example":9007199254740991`)},
		{name: "v12 creator can demote anyone", versions: []int{12}, build: func(r *room) *event.PDU {
			plRoom(r, `"ban":9007199254740991`)
			return newPL(r, alice, `{"users":{}}`)
		}},
		{name: "users_default above", want: "power_levels.named_new", build: change(bob, "", `"users_default":51`)},
		{name: "first PL needs no change checks", build: func(r *room) *event.PDU {
			r.member(alice, MembershipJoin)
			return newPL(r, alice, `{"ban":100,"users":{"@bob:b.example":100}}`)
		}},
	})
}

func TestParsePowerLevelsDefaults(t *testing.T) {
	for _, n := range allVersions {
		r := newRoom(n, "")
		p, err := ParsePowerLevels(r.v, nil, r.create)
		if err != nil {
			t.Fatal(err)
		}
		wantCreator := int64(100)
		if r.v.PrivilegedCreators {
			wantCreator = math.MaxInt64
		}
		if got := p.UserLevel(alice); got != wantCreator {
			t.Errorf("v%d no event: creator level %d want %d", n, got, wantCreator)
		}
		if p.UserLevel(bob) != 0 || p.Ban() != 50 || p.Kick() != 50 || p.Redact() != 50 || p.Invite() != 0 ||
			p.StateDefault() != 50 || p.EventsDefault() != 0 || p.UsersDefault() != 0 {
			t.Errorf("v%d defaults wrong: %+v", n, p)
		}
		if p.EventLevel("m.room.name", true) != 50 || p.EventLevel("m.room.message", false) != 0 {
			t.Errorf("v%d event defaults", n)
		}
		if l, ok := p.Notification("room"); !ok || l != 50 {
			t.Errorf("v%d notifications.room default", n)
		}
		if _, ok := p.Notification("other"); ok {
			t.Errorf("v%d unknown notification key", n)
		}
		p, err = ParsePowerLevels(r.v, []byte(`{"users_default":5,"users":{"@bob:b.example":7},"events":{"m.room.name":3},"notifications":{"room":1}}`), r.create)
		if err != nil {
			t.Fatal(err)
		}
		wantAlice := int64(5)
		if r.v.PrivilegedCreators {
			wantAlice = math.MaxInt64
		}
		if p.UserLevel(alice) != wantAlice || p.UserLevel(bob) != 7 || p.UserLevel(carol) != 5 {
			t.Errorf("v%d users", n)
		}
		if p.EventLevel("m.room.name", true) != 3 || p.EventLevel("m.room.name", false) != 3 {
			t.Errorf("v%d events entry applies to both kinds", n)
		}
		if l, _ := p.Notification("room"); l != 1 {
			t.Errorf("v%d notifications.room", n)
		}
		if !p.IsCreator(alice) || p.IsCreator(bob) {
			t.Errorf("v%d IsCreator", n)
		}
		u := p.Users()
		u[bob] = 99
		if p.UserLevel(bob) != 7 {
			t.Error("Users must return a copy")
		}
	}
}

func TestParseLevelForms(t *testing.T) {
	type c struct {
		raw             string
		strict, intOnly bool
		want            int64
		kind            levelKind
	}
	for _, tc := range []c{
		{"50", false, false, 50, levelOK},
		{"-7", true, true, -7, levelOK},
		{"0", true, true, 0, levelOK},
		{"-0", true, true, 0, levelOK},
		{"9007199254740991", true, true, maxSafeInt, levelOK},
		{"-9007199254740992", true, true, 0, levelInvalid},
		{"50.9", false, false, 50, levelOK},
		{"-50.9", false, false, -50, levelOK},
		{"5.114698E4", false, false, 51146, levelOK},
		{"1e400", false, false, 0, levelFatal},
		{"1e30", false, false, math.MaxInt64, levelOK},
		{"99999999999999999999", false, false, math.MaxInt64, levelOK},
		{"50.0", true, false, 0, levelInvalid},
		{"1e2", true, false, 0, levelInvalid},
		{`"100"`, true, false, 100, levelOK},
		{`"000100"`, true, false, 100, levelOK},
		{`"+100"`, true, false, 100, levelOK},
		{`" -100 "`, true, false, -100, levelOK},
		{`"\t42\n"`, true, false, 42, levelOK},
		{`"--1"`, true, false, 0, levelInvalid},
		{`"+"`, true, false, 0, levelInvalid},
		{`""`, true, false, 0, levelInvalid},
		{`"1 2"`, true, false, 0, levelInvalid},
		{`"1.0"`, true, false, 0, levelInvalid},
		{`"99999999999999999999999"`, true, false, math.MaxInt64, levelOK},
		{`"-99999999999999999999999"`, true, false, math.MinInt64, levelOK},
		{`"-9223372036854775808"`, true, false, math.MinInt64, levelOK},
		{`"100"`, true, true, 0, levelInvalid},
		{"true", false, false, 0, levelInvalid},
		{"null", false, false, 0, levelInvalid},
		{"{}", false, false, 0, levelInvalid},
	} {
		got, kind := parseLevel(tc.strict, tc.intOnly, []byte(tc.raw))
		if kind != tc.kind || (kind == levelOK && got != tc.want) {
			t.Errorf("parseLevel(%s, strict=%v, intOnly=%v) = %d,%d want %d,%d", tc.raw, tc.strict, tc.intOnly, got, kind, tc.want, tc.kind)
		}
	}
}

func TestCreators(t *testing.T) {
	for _, n := range allVersions {
		r := newRoom(n, `"additional_creators":["@bob:b.example",5,"@carol:c.example"]`)
		got := Creators(r.create)
		switch {
		case n <= 11:
			if len(got) != 1 || got[0] != alice {
				t.Errorf("v%d creators %v", n, got)
			}
		default:
			if len(got) != 3 || got[0] != alice || got[1] != bob || got[2] != carol {
				t.Errorf("v%d creators %v", n, got)
			}
		}
		for _, u := range []string{alice, bob, carol, dave} {
			want := false
			for _, g := range got {
				want = want || g == u
			}
			if isCreator(r.v, r.create, u) != want {
				t.Errorf("v%d isCreator(%s) disagrees with Creators", n, u)
			}
		}
	}
	// Before v11 the creator comes from content, not the sender.
	r := newRoom(5, "")
	r.create.Sender = bob
	if got := Creators(r.create); len(got) != 1 || got[0] != alice {
		t.Errorf("v5 creators %v", got)
	}
	if Creators(nil) != nil {
		t.Error("nil create")
	}
}
