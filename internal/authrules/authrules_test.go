package authrules

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"testing"

	"conclave/internal/event"
)

// room is a toy auth state built from PDU literals.
type room struct {
	rv     *event.RoomVersion
	state  map[[2]string]*event.PDU
	create *event.PDU
	n      int
}

func (r *room) StateEvent(t, k string) *event.PDU { return r.state[[2]string{t, k}] }

func newRoom(t testing.TB, version string, creator string) *room {
	rv, ok := event.GetRoomVersion(version)
	if !ok {
		t.Fatalf("version %s", version)
	}
	r := &room{rv: rv, state: map[[2]string]*event.PDU{}}
	content := `{"room_version":"` + version + `"}`
	if !rv.CreatorIsSender {
		content = `{"creator":"` + creator + `","room_version":"` + version + `"}`
	}
	roomID := "!r:example.org"
	if rv.RoomIDFromCreateEvent {
		roomID = ""
	}
	create := r.ev(creator, "m.room.create", strp(""), content)
	create.RoomID = roomID
	create.PrevEvents = nil
	if err := Check(create, r); err != nil {
		t.Fatalf("create: %v", err)
	}
	r.create = create
	r.apply(create)
	join := r.ev(creator, "m.room.member", strp(creator), `{"membership":"join"}`)
	join.PrevEvents = []string{create.EventID}
	r.must(t, join)
	return r
}

func strp(s string) *string { return &s }

func (r *room) ev(sender, typ string, sk *string, content string) *event.PDU {
	r.n++
	return &event.PDU{EventID: fmt.Sprintf("$e%d", r.n), RoomID: "!r:example.org", Sender: sender, Type: typ, StateKey: sk,
		Content: json.RawMessage(content), PrevEvents: []string{"$prev"}, Version: r.rv}
}

func (r *room) apply(e *event.PDU) {
	if e.StateKey != nil {
		r.state[[2]string{e.Type, *e.StateKey}] = e
	}
}

func (r *room) must(t testing.TB, e *event.PDU) {
	t.Helper()
	if err := Check(e, r); err != nil {
		t.Fatalf("%s %s by %s: %v", e.Type, e.Content, e.Sender, err)
	}
	r.apply(e)
}

func (r *room) mustNot(t testing.TB, e *event.PDU, rule string) {
	t.Helper()
	err := Check(e, r)
	if err == nil {
		t.Fatalf("%s %s by %s: allowed, want rule %s", e.Type, e.Content, e.Sender, rule)
	}
	if ae, ok := err.(*Error); !ok || (rule != "" && ae.Rule != rule) {
		t.Fatalf("%s by %s: %v, want rule %s", e.Type, e.Sender, err, rule)
	}
}

func (r *room) member(sender, target, membership string) *event.PDU {
	return r.ev(sender, "m.room.member", strp(target), `{"membership":"`+membership+`"}`)
}

func (r *room) state1(sender, typ, content string) *event.PDU {
	return r.ev(sender, typ, strp(""), content)
}

const (
	alice = "@alice:example.org"
	bob   = "@bob:example.org"
	carol = "@carol:example.org"
	eve   = "@eve:evil.example"
)

var versions = []string{"1", "6", "7", "8", "10", "11", "12"}

func TestCreateRules(t *testing.T) {
	for _, v := range versions {
		r := newRoom(t, v, alice)
		c := r.ev(alice, "m.room.create", strp(""), `{"creator":"`+alice+`","room_version":"`+v+`"}`)
		c.PrevEvents = []string{"$x"}
		if r.rv.RoomIDFromCreateEvent {
			c.RoomID = ""
		}
		r.mustNot(t, c, "1.1")
		c2 := r.ev(alice, "m.room.create", strp(""), `{"creator":"`+alice+`","room_version":"99"}`)
		c2.PrevEvents = nil
		if r.rv.RoomIDFromCreateEvent {
			c2.RoomID = ""
		}
		r.mustNot(t, c2, "1.3")
		if !r.rv.RoomIDFromCreateEvent {
			c3 := r.ev(eve, "m.room.create", strp(""), `{"creator":"`+eve+`"}`)
			c3.PrevEvents = nil
			r.mustNot(t, c3, "1.2")
		} else {
			c4 := r.ev(alice, "m.room.create", strp(""), `{"additional_creators":["not a user"]}`)
			c4.PrevEvents, c4.RoomID = nil, ""
			r.mustNot(t, c4, "1.4")
		}
		if !r.rv.CreatorIsSender {
			c5 := r.ev(alice, "m.room.create", strp(""), `{}`)
			c5.PrevEvents = nil
			r.mustNot(t, c5, "1.4")
		}
	}
}

func TestMembershipRules(t *testing.T) {
	for _, v := range versions {
		t.Run("v"+v, func(t *testing.T) {
			r := newRoom(t, v, alice)
			r.must(t, r.state1(alice, "m.room.power_levels", `{"users":`+usersFor(r, map[string]int{alice: 100})+`}`))
			r.must(t, r.state1(alice, "m.room.join_rules", `{"join_rule":"invite"}`))
			// Not invited: no join; no joining on someone's behalf.
			r.mustNot(t, r.member(bob, bob, "join"), "5.3.4")
			r.mustNot(t, r.member(alice, bob, "join"), "5.3.2")
			// Invites need a joined sender at invite level.
			r.mustNot(t, r.member(carol, bob, "invite"), "5.4.2")
			r.must(t, r.member(alice, bob, "invite"))
			r.must(t, r.member(bob, bob, "join"))
			r.mustNot(t, r.member(alice, bob, "invite"), "5.4.3")
			// Bob (level 0) cannot kick or ban Alice, nor invite at level 0? invite default is 0: he can.
			r.mustNot(t, r.member(bob, alice, "leave"), "5.5.4")
			r.mustNot(t, r.member(bob, alice, "ban"), "5.6.2")
			r.must(t, r.member(bob, carol, "invite"))
			// Alice bans Bob; Bob cannot rejoin or be invited; only a banner unbans.
			r.must(t, r.member(alice, bob, "ban"))
			r.mustNot(t, r.member(bob, bob, "join"), "5.3.3")
			r.mustNot(t, r.member(alice, bob, "invite"), "5.4.3")
			r.must(t, r.member(alice, bob, "leave"))
			// Leaving when not in the room; unknown memberships.
			r.mustNot(t, r.member(bob, bob, "leave"), "5.5.1")
			r.mustNot(t, r.member(alice, alice, "dance"), "5.8")
			r.mustNot(t, r.ev(alice, "m.room.member", nil, `{"membership":"join"}`), "5.1")
			r.mustNot(t, r.ev(alice, "m.room.member", strp(alice), `{"membership":5}`), "5.1")
			// Public rooms let anyone not banned join.
			r.must(t, r.state1(alice, "m.room.join_rules", `{"join_rule":"public"}`))
			r.must(t, r.member(bob, bob, "join"))
			// Knocking (v7+).
			r.must(t, r.state1(alice, "m.room.join_rules", `{"join_rule":"knock"}`))
			dave := "@dave:example.org"
			if r.rv.Knocking {
				r.must(t, r.member(dave, dave, "knock"))
				r.must(t, r.member(dave, dave, "leave"))
				r.mustNot(t, r.member(alice, dave, "knock"), "5.7.2")
			} else {
				r.mustNot(t, r.member(dave, dave, "knock"), "5.8")
			}
		})
	}
}

func usersFor(r *room, users map[string]int) string {
	if r.rv.PrivilegedCreators {
		for _, c := range Creators(r.create) {
			delete(users, c)
		}
	}
	b, _ := json.Marshal(users)
	return string(b)
}

func TestRestrictedJoin(t *testing.T) {
	for _, v := range []string{"8", "10", "11"} {
		r := newRoom(t, v, alice)
		r.must(t, r.state1(alice, "m.room.power_levels", `{"users":{"`+alice+`":100},"invite":50}`))
		r.must(t, r.state1(alice, "m.room.join_rules", `{"join_rule":"restricted","allow":[]}`))
		r.mustNot(t, r.member(bob, bob, "join"), "5.3.5")
		via := r.ev(bob, "m.room.member", strp(bob), `{"membership":"join","join_authorised_via_users_server":"`+carol+`"}`)
		r.mustNot(t, via, "5.3.5") // carol is not joined
		ok := r.ev(bob, "m.room.member", strp(bob), `{"membership":"join","join_authorised_via_users_server":"`+alice+`"}`)
		r.must(t, ok)
	}
}

func TestSendingAndStateRules(t *testing.T) {
	for _, v := range versions {
		r := newRoom(t, v, alice)
		r.must(t, r.state1(alice, "m.room.power_levels", `{"users":`+usersFor(r, map[string]int{alice: 100, bob: 10})+`,"events":{"m.room.name":50},"state_default":50,"events_default":0}`))
		r.must(t, r.state1(alice, "m.room.join_rules", `{"join_rule":"public"}`))
		r.mustNot(t, r.ev(bob, "m.room.message", nil, `{"body":"x"}`), "6")
		r.must(t, r.member(bob, bob, "join"))
		r.must(t, r.ev(bob, "m.room.message", nil, `{"body":"x"}`))
		r.mustNot(t, r.state1(bob, "m.room.name", `{"name":"x"}`), "8")
		r.mustNot(t, r.state1(bob, "m.room.topic", `{"topic":"x"}`), "8")
		r.must(t, r.state1(alice, "m.room.topic", `{"topic":"x"}`))
		// A state key naming another user is theirs alone.
		r.mustNot(t, r.ev(alice, "com.example.x", strp(bob), `{}`), "9")
		r.must(t, r.ev(alice, "com.example.y", strp(alice), `{}`))
	}
}

func TestPowerLevelRules(t *testing.T) {
	for _, v := range versions {
		t.Run("v"+v, func(t *testing.T) {
			r := newRoom(t, v, alice)
			r.must(t, r.state1(alice, "m.room.power_levels", `{"users":`+usersFor(r, map[string]int{alice: 100, bob: 50, carol: 50})+`,"events":{"m.room.power_levels":50}}`))
			r.must(t, r.state1(alice, "m.room.join_rules", `{"join_rule":"public"}`))
			r.must(t, r.member(bob, bob, "join"))
			r.must(t, r.member(carol, carol, "join"))
			base := map[string]int{alice: 100, bob: 50, carol: 50}
			pl := func(sender string, users map[string]int, extra string) *event.PDU {
				u := map[string]int{}
				for k, v := range users {
					u[k] = v
				}
				return r.state1(sender, "m.room.power_levels", `{"users":`+usersFor(r, u)+`,"events":{"m.room.power_levels":50}`+extra+`}`)
			}
			// Bob may not raise himself or anyone above 50, nor demote an equal.
			r.mustNot(t, pl(bob, map[string]int{alice: 100, bob: 60, carol: 50}, ""), "10.10")
			r.mustNot(t, pl(bob, map[string]int{alice: 100, bob: 50, carol: 0}, ""), "10.9")
			r.mustNot(t, pl(bob, map[string]int{alice: 100, bob: 50, carol: 50}, `,"ban":60`), "10.6.2")
			if !r.rv.PrivilegedCreators {
				r.mustNot(t, pl(bob, map[string]int{bob: 50, carol: 50}, ""), "10.9") // removing Alice
			}
			// Bob may lower himself and add a user up to his own level.
			r.must(t, pl(bob, map[string]int{alice: 100, bob: 50, carol: 50, "@dave:example.org": 50}, ""))
			if r.rv.IntegerPowerLevels {
				r.mustNot(t, pl(alice, base, `,"kick":"50"`), "10.1")
			} else {
				r.must(t, pl(alice, base, `,"kick":"50"`))
			}
			r.mustNot(t, pl(alice, map[string]int{alice: 100, "not-a-user": 5}, ""), "10.3")
			r.mustNot(t, r.state1(alice, "m.room.power_levels", `{"events":[]}`), "10.2")
			if r.rv.PrivilegedCreators {
				r.mustNot(t, r.state1(alice, "m.room.power_levels", `{"users":{"`+alice+`":100}}`), "10.4")
				// A creator cannot be kicked or banned by anyone.
				r.mustNot(t, r.member(bob, alice, "ban"), "5.6.2")
			}
		})
	}
}

func TestNeeded(t *testing.T) {
	v10, _ := event.GetRoomVersion("10")
	v12, _ := event.GetRoomVersion("12")
	got := Needed(v10, "m.room.member", strp(bob), alice, json.RawMessage(`{"membership":"invite"}`))
	want := []StateKey{{"m.room.create", ""}, {"m.room.power_levels", ""}, {"m.room.member", alice}, {"m.room.member", bob}, {"m.room.join_rules", ""}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("invite: %v", got)
	}
	got = Needed(v12, "m.room.message", nil, alice, json.RawMessage(`{}`))
	if fmt.Sprint(got) != fmt.Sprint([]StateKey{{"m.room.power_levels", ""}, {"m.room.member", alice}}) {
		t.Fatalf("v12 message: %v", got)
	}
	got = Needed(v10, "m.room.member", strp(bob), bob, json.RawMessage(`{"membership":"join","join_authorised_via_users_server":"`+carol+`"}`))
	if fmt.Sprint(got[len(got)-1]) != fmt.Sprint(StateKey{"m.room.member", carol}) {
		t.Fatalf("restricted join: %v", got)
	}
}

// TestRandomMembershipProperties plays random membership changes and checks
// invariants the rules promise whatever the sequence: a banned user never
// joins, and nobody removes a user at or above their own level.
func TestRandomMembershipProperties(t *testing.T) {
	users := []string{alice, bob, carol, "@dave:example.org", eve}
	memberships := []string{"join", "invite", "leave", "ban", "knock"}
	rng := rand.New(rand.NewSource(1))
	for _, v := range versions {
		for round := 0; round < 30; round++ {
			r := newRoom(t, v, alice)
			r.must(t, r.state1(alice, "m.room.power_levels", `{"users":`+usersFor(r, map[string]int{alice: 100, bob: 50})+`,"kick":50,"ban":50}`))
			rule := []string{"public", "invite", "knock"}[rng.Intn(3)]
			r.must(t, r.state1(alice, "m.room.join_rules", `{"join_rule":"`+rule+`"}`))
			for step := 0; step < 60; step++ {
				s, tg, m := users[rng.Intn(len(users))], users[rng.Intn(len(users))], memberships[rng.Intn(len(memberships))]
				e := r.member(s, tg, m)
				before := membershipOf(r, tg)
				pl, _ := ParsePowerLevels(r.rv, contentOf(r.StateEvent("m.room.power_levels", "")), r.create)
				if Check(e, r) != nil {
					continue
				}
				if m == "join" && before == "ban" {
					t.Fatalf("v%s: banned %s joined", v, tg)
				}
				if (m == "leave" || m == "ban") && s != tg && pl.UserLevel(tg) >= pl.UserLevel(s) {
					t.Fatalf("v%s: %s removed %s at or above their level", v, s, tg)
				}
				if m == "join" && s != tg {
					t.Fatalf("v%s: join on behalf of another", v)
				}
				r.apply(e)
			}
		}
	}
}

func FuzzCheck(f *testing.F) {
	f.Add("m.room.member", "@bob:example.org", `{"membership":"join"}`)
	f.Add("m.room.power_levels", "", `{"users":{"@alice:example.org":"100"},"ban":1.5}`)
	f.Add("m.room.member", "@bob:example.org", `{"membership":"invite","third_party_invite":{"signed":{"mxid":"@bob:example.org","token":"t","signatures":{}}}}`)
	f.Add("m.room.join_rules", "", `{"join_rule":"restricted"}`)
	f.Fuzz(func(t *testing.T, typ, sk, content string) {
		for _, v := range []string{"6", "10", "12"} {
			r := newRoom(t, v, alice)
			r.must(t, r.state1(alice, "m.room.power_levels", `{}`))
			e := r.ev(bob, typ, &sk, content)
			_ = Check(e, r)
			e2 := r.ev(alice, typ, &sk, content)
			_ = Check(e2, r)
			_, _ = ParsePowerLevels(r.rv, json.RawMessage(content), r.create)
			_ = Needed(r.rv, typ, &sk, alice, json.RawMessage(content))
		}
	})
}

func BenchmarkCheckMessage(b *testing.B) {
	r := newRoom(b, "10", alice)
	r.must(b, r.state1(alice, "m.room.power_levels", `{"users":{"`+alice+`":100}}`))
	e := r.ev(alice, "m.room.message", nil, `{"body":"hello"}`)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := Check(e, r); err != nil {
			b.Fatal(err)
		}
	}
}
