package stateres

import (
	"errors"
	"maps"
	"math/rand/v2"
	"testing"

	"conclave/internal/authrules"
	"conclave/internal/event"
)

var allVersions = []string{"10", "11", "12"}

// expect checks the resolution of the sets, in both orders, for the keys
// given (test names or event IDs).
func expect(t *testing.T, d *dag, sets []StateMap, want map[authrules.StateKey]*event.PDU) StateMap {
	t.Helper()
	got := d.resolve(sets...)
	rev := d.resolve(reversed(sets)...)
	if !maps.Equal(got, rev) {
		t.Fatalf("order of the sets matters:\n %s\n %s", d.describe(got), d.describe(rev))
	}
	if ref, err := refResolve(d.rv, sets, d, refOptions{}); err != nil || !maps.Equal(got, ref) {
		t.Fatalf("Resolve and the reference resolver differ:\n ours %s\n ref  %s (%v)", d.describe(got), d.describe(ref), err)
	}
	for key, ev := range want {
		if ev == nil {
			if id, ok := got[key]; ok {
				t.Errorf("%v = %s, want absent", key, d.name(id))
			}
			continue
		}
		if got[key] != ev.EventID {
			t.Errorf("%v = %s, want %s", key, d.name(got[key]), d.name(ev.EventID))
		}
	}
	return got
}

func reversed(sets []StateMap) []StateMap {
	out := make([]StateMap, len(sets))
	for i, s := range sets {
		out[len(sets)-1-i] = s
	}
	return out
}

func forAll(t *testing.T, f func(t *testing.T, version string)) {
	for _, v := range allVersions {
		t.Run("v"+v, func(t *testing.T) { f(t, v) })
	}
}

// A moderator changes the power levels while an admin bans them: the ban
// (higher power, applied first) wins and the moderator's change, checked
// after it, is refused. (The "ban vs power levels" case of the spec's
// design, MSC1442.)
func TestBanVsPowerLevels(t *testing.T) {
	forAll(t, func(t *testing.T, v string) {
		d, h := newDAG(t, v, map[string]int{bob: 50})
		d.must(h, "bob.join", bob, authrules.TypeMember, bob, member("join"))
		d.must(h, "carol.join", carol, authrules.TypeMember, carol, member("join"))
		a, b := h.fork(), h.fork()
		ban := d.must(a, "ban.bob", alice, authrules.TypeMember, bob, member("ban"))
		pl := d.must(b, "pl.bob", bob, authrules.TypePowerLevels, "", plContent(levels(d, map[string]int{bob: 50, carol: 50}), nil))
		_ = pl
		expect(t, d, []StateMap{a.state, b.state}, map[authrules.StateKey]*event.PDU{
			k(authrules.TypeMember, bob):     ban,
			k(authrules.TypePowerLevels, ""): d.events[h.state[k(authrules.TypePowerLevels, "")]],
		})
	})
}

// levels adds alice's 100 before v12 (where she is a creator instead).
func levels(d *dag, users map[string]int) map[string]int {
	out := maps.Clone(users)
	if !d.rv.PrivilegedCreators {
		out[alice] = 100
	}
	return out
}

// An admin makes the room invite-only while someone joins: the join rules
// (a power event) are resolved first, and the join, checked against them,
// is refused.
func TestJoinRuleEvasion(t *testing.T) {
	forAll(t, func(t *testing.T, v string) {
		d, h := newDAG(t, v, nil)
		a, b := h.fork(), h.fork()
		jr := d.must(a, "jr.invite", alice, authrules.TypeJoinRules, "", `{"join_rule":"invite"}`)
		d.must(b, "eve.join", eve, authrules.TypeMember, eve, member("join"))
		expect(t, d, []StateMap{a.state, b.state}, map[authrules.StateKey]*event.PDU{
			k(authrules.TypeJoinRules, ""): jr,
			k(authrules.TypeMember, eve):   nil,
		})
	})
}

// A moderator sets the topic while being banned: the topic, checked after
// the ban, is refused and the topic stays what it was ("topic reset").
func TestTopicReset(t *testing.T) {
	forAll(t, func(t *testing.T, v string) {
		d, h := newDAG(t, v, map[string]int{bob: 50})
		d.must(h, "bob.join", bob, authrules.TypeMember, bob, member("join"))
		t1 := d.must(h, "topic.1", alice, "m.room.topic", "", `{"topic":"one"}`)
		a, b := h.fork(), h.fork()
		d.must(a, "topic.2", bob, "m.room.topic", "", `{"topic":"two"}`)
		ban := d.must(b, "ban.bob", alice, authrules.TypeMember, bob, member("ban"))
		expect(t, d, []StateMap{a.state, b.state}, map[authrules.StateKey]*event.PDU{
			k("m.room.topic", ""):        t1,
			k(authrules.TypeMember, bob): ban,
		})
	})
}

// Topics set on two branches with no power change: the mainline positions
// are equal, so the later origin_server_ts wins; with equal timestamps, the
// greater event ID.
func TestTopicMainlineOrder(t *testing.T) {
	forAll(t, func(t *testing.T, v string) {
		d, h := newDAG(t, v, map[string]int{bob: 50})
		d.must(h, "bob.join", bob, authrules.TypeMember, bob, member("join"))
		a, b := h.fork(), h.fork()
		ta := d.sendAt(a, "topic.a", alice, "m.room.topic", "", `{"topic":"a"}`, 50_000)
		tb := d.sendAt(b, "topic.b", bob, "m.room.topic", "", `{"topic":"b"}`, 40_000)
		expect(t, d, []StateMap{a.state, b.state}, map[authrules.StateKey]*event.PDU{k("m.room.topic", ""): ta})
		_ = tb
		// Equal timestamps: the event ID decides.
		c, e := h.fork(), h.fork()
		tc := d.sendAt(c, "topic.c", alice, "m.room.topic", "", `{"topic":"c"}`, 60_000)
		te := d.sendAt(e, "topic.e", bob, "m.room.topic", "", `{"topic":"e"}`, 60_000)
		want := tc
		if te.EventID > tc.EventID {
			want = te
		}
		expect(t, d, []StateMap{c.state, e.state}, map[authrules.StateKey]*event.PDU{k("m.room.topic", ""): want})
		// A topic based on a newer power levels event comes later in the
		// mainline ordering, whatever its timestamp.
		f, g := h.fork(), h.fork()
		d.must(f, "pl.f", alice, authrules.TypePowerLevels, "", plContent(levels(d, map[string]int{bob: 50, carol: 10}), nil))
		tf := d.sendAt(f, "topic.f", alice, "m.room.topic", "", `{"topic":"f"}`, 1)
		d.sendAt(g, "topic.g", bob, "m.room.topic", "", `{"topic":"g"}`, 90_000_000)
		expect(t, d, []StateMap{f.state, g.state}, map[authrules.StateKey]*event.PDU{k("m.room.topic", ""): tf})
	})
}

// Two admins on two servers change the power levels concurrently, each also
// demoting the other. Every server, whatever the order in which it sees the
// branches, must resolve to the same state: the change of the admin whose
// power (per its auth events) is higher, or with equal power the earlier,
// applies first, and the other's change is then checked against it.
func TestConcurrentPowerLevelChanges(t *testing.T) {
	forAll(t, func(t *testing.T, v string) {
		d, h := newDAG(t, v, map[string]int{bob: 100, carol: 100})
		d.must(h, "bob.join", bob, authrules.TypeMember, bob, member("join"))
		d.must(h, "carol.join", carol, authrules.TypeMember, carol, member("join"))
		a, b := h.fork(), h.fork()
		// bob (server b) gives dave 50; carol (server c), a bit later,
		// gives him 10.
		pb := d.sendAt(a, "pl.by.bob", bob, authrules.TypePowerLevels, "", plContent(levels(d, map[string]int{bob: 100, carol: 100, dave: 50}), nil), 70_000)
		pc := d.sendAt(b, "pl.by.carol", carol, authrules.TypePowerLevels, "", plContent(levels(d, map[string]int{bob: 100, carol: 100, dave: 10}), nil), 80_000)
		if pb == nil || pc == nil {
			t.Fatal("setup")
		}
		// Each server then sends a topic on its branch.
		d.must(a, "topic.b", bob, "m.room.topic", "", `{"topic":"b"}`)
		d.must(b, "topic.c", carol, "m.room.topic", "", `{"topic":"c"}`)
		// Server b resolves (a, b); server c resolves (b, a).
		onB := expect(t, d, []StateMap{a.state, b.state}, map[authrules.StateKey]*event.PDU{
			// Equal power (100): bob's change is earlier, so applied
			// first; carol's, checked against it, is allowed too and
			// applied last.
			k(authrules.TypePowerLevels, ""): pc,
		})
		onC := d.resolve(b.state, a.state)
		if !maps.Equal(onB, onC) {
			t.Fatalf("servers disagree:\n %s\n %s", d.describe(onB), d.describe(onC))
		}
		// The mainline is [pl.by.carol, pl0]: bob's topic is based on
		// pl0 (through pl.by.bob, off the mainline), carol's on
		// pl.by.carol, so bob's sorts first and carol's applies last.
		if d.name(onB[k("m.room.topic", "")]) != "topic.c" {
			t.Errorf("topic = %s, want topic.c", d.name(onB[k("m.room.topic", "")]))
		}
		// Resolving again after more concurrent activity stays convergent.
		m := d.merge(a, b)
		d.must(m, "topic.after", bob, "m.room.topic", "", `{"topic":"after"}`)
		x := b.fork()
		d.send(x, "", carol, "m.room.topic", "", `{"topic":"late"}`)
		r1 := d.resolve(m.state, x.state, a.state)
		r2 := d.resolve(a.state, m.state, x.state)
		r3 := d.resolve(x.state, a.state, m.state)
		if !maps.Equal(r1, r2) || !maps.Equal(r1, r3) {
			t.Fatal("three-way resolution depends on order")
		}
	})
}

// A user who was kicked long ago and rejoined: the old kick is in the auth
// difference (only one branch's chain has it) but must not override the
// newer membership, which is unconflicted — the shape of the state reset of
// synapse#6774, where old membership events came back.
func TestOldKickDoesNotComeBack(t *testing.T) {
	forAll(t, func(t *testing.T, v string) {
		d, h := newDAG(t, v, map[string]int{bob: 60, carol: 50})
		d.must(h, "bob.join", bob, authrules.TypeMember, bob, member("join"))
		d.must(h, "carol.join", carol, authrules.TypeMember, carol, member("join"))
		a, b := h.fork(), h.fork()
		d.must(a, "kick.carol", bob, authrules.TypeMember, carol, member("leave"))
		rejoin := d.must(a, "carol.rejoin", carol, authrules.TypeMember, carol, member("join"))
		d.must(a, "topic.carol", carol, "m.room.topic", "", `{"topic":"x"}`)
		d.must(b, "topic.alice", alice, "m.room.topic", "", `{"topic":"y"}`)
		expect(t, d, []StateMap{a.state, b.state}, map[authrules.StateKey]*event.PDU{
			k(authrules.TypeMember, carol): rejoin,
		})
	})
}

// A join racing a ban (dendrite#3040 was a join whose resolution reset the
// room): the ban, a power event, is applied first; the join is then refused,
// and nothing else in the room changes.
func TestJoinRacingBan(t *testing.T) {
	forAll(t, func(t *testing.T, v string) {
		d, h := newDAG(t, v, nil)
		d.must(h, "eve.invite", alice, authrules.TypeMember, eve, member("invite"))
		a, b := h.fork(), h.fork()
		ban := d.must(a, "ban.eve", alice, authrules.TypeMember, eve, member("ban"))
		d.must(b, "eve.join", eve, authrules.TypeMember, eve, member("join"))
		got := expect(t, d, []StateMap{a.state, b.state}, map[authrules.StateKey]*event.PDU{
			k(authrules.TypeMember, eve): ban,
		})
		for key, id := range h.state {
			if key != k(authrules.TypeMember, eve) && got[key] != id {
				t.Errorf("%v changed to %s", key, d.name(got[key]))
			}
		}
	})
}

// Rejected events are never used: not applied when conflicted (synapse#13797
// shape: a rejected event must not enter the state through resolution), and
// not used as the auth event a check falls back to (dendrite#2507, #3243,
// gomatrixserverlib#421).
func TestRejectedEventsNotUsed(t *testing.T) {
	forAll(t, func(t *testing.T, v string) {
		d, h := newDAG(t, v, map[string]int{bob: 50})
		d.must(h, "bob.join", bob, authrules.TypeMember, bob, member("join"))
		a, b := h.fork(), h.fork()
		// A power levels event the room's server marked rejected (say its
		// auth chain failed elsewhere), which would make bob an admin.
		evil := d.must(a, "pl.evil", alice, authrules.TypePowerLevels, "", plContent(levels(d, map[string]int{bob: 100}), map[string]int{"state_default": 100}))
		d.rejected[evil.EventID] = true
		topic := d.must(b, "topic", alice, "m.room.topic", "", `{"topic":"t"}`)
		got := expect(t, d, []StateMap{a.state, b.state}, map[authrules.StateKey]*event.PDU{
			k(authrules.TypePowerLevels, ""): d.events[h.state[k(authrules.TypePowerLevels, "")]],
			k("m.room.topic", ""):            topic,
		})
		_ = got
		// bob's topic cites the rejected power levels as its auth event.
		// In v2.1 the checks start from an empty state, so the check falls
		// back to the auth events: the rejected one must be skipped (no
		// power levels: state_default 50 > bob's 0, refused).
		c := h.fork()
		c.state[k(authrules.TypePowerLevels, "")] = evil.EventID
		bt := d.build(c, bob, "m.room.topic", "", `{"topic":"bob"}`, 0)
		d.add("topic.bob", bt)
		c.state[k("m.room.topic", "")] = bt.EventID
		res := d.resolve(c.state, b.state)
		if res[k("m.room.topic", "")] == bt.EventID {
			t.Errorf("topic by bob was allowed through a rejected auth event")
		}
		// A rejected event alone, unconflicted, is returned as given.
		one := d.resolve(c.state, c.state)
		if one[k(authrules.TypePowerLevels, "")] != evil.EventID {
			t.Errorf("unconflicted value changed")
		}
	})
}

// Unknown events (the Loader does not have them) are ignored, not fatal.
func TestUnknownEvents(t *testing.T) {
	forAll(t, func(t *testing.T, v string) {
		d, h := newDAG(t, v, nil)
		a := h.fork()
		a.state[k("m.room.topic", "")] = "$unknown"
		topic := d.must(h.fork(), "topic", alice, "m.room.topic", "", `{"topic":"t"}`)
		b := h.fork()
		b.state[k("m.room.topic", "")] = topic.EventID
		expect(t, d, []StateMap{a.state, b.state}, map[authrules.StateKey]*event.PDU{k("m.room.topic", ""): topic})
	})
}

// Property: the resolution of one set is that set, of equal sets that set,
// of no sets the empty state; the order of the sets never matters. Room
// version 1 (state resolution v1) too.
func TestProperties(t *testing.T) {
	for _, v := range append([]string{"1"}, allVersions...) {
		for seed := uint64(1); seed <= 150; seed++ {
			d, sets := randomDAG(t, v, seed)
			for _, s := range sets {
				if got := d.resolve(s); !maps.Equal(got, s) {
					t.Fatalf("v%s seed %d: one set changed", v, seed)
				}
				if got := d.resolve(s, s, s); !maps.Equal(got, s) {
					t.Fatalf("v%s seed %d: equal sets changed", v, seed)
				}
			}
			want := d.resolve(sets...)
			rng := rand.New(rand.NewPCG(seed, 7))
			for i := 0; i < 3; i++ {
				p := append([]StateMap(nil), sets...)
				rng.Shuffle(len(p), func(i, j int) { p[i], p[j] = p[j], p[i] })
				if got := d.resolve(p...); !maps.Equal(got, want) {
					t.Fatalf("v%s seed %d: order of sets matters", v, seed)
				}
			}
			// Resolving a set with the resolution changes nothing more.
			if got := d.resolve(want, want); !maps.Equal(got, want) {
				t.Fatalf("v%s seed %d: not idempotent", v, seed)
			}
		}
	}
	if got, err := Resolve(roomVersion("10"), nil, &dag{}); err != nil || len(got) != 0 {
		t.Fatal("no sets")
	}
	if _, err := Resolve(&event.RoomVersion{ID: "x", StateRes: 3}, []StateMap{{}}, &dag{}); !errors.Is(err, ErrUnsupportedRoomVersion) {
		t.Fatal("unknown state resolution algorithm accepted")
	}
	if _, err := Resolve(nil, []StateMap{{}}, &dag{}); !errors.Is(err, ErrUnsupportedRoomVersion) {
		t.Fatal("no room version accepted")
	}
}

// cycleLoader serves a graph whose auth events form a cycle, and an endless
// chain: neither may hang, recurse without bound or panic.
type cycleLoader struct {
	rv  *event.RoomVersion
	evs map[string]*event.PDU
}

func (c *cycleLoader) Event(id string) (*event.PDU, bool, bool) {
	if ev, ok := c.evs[id]; ok {
		return ev, false, true
	}
	// $chainN cites $chain(N+1): an unbounded graph.
	var n int
	if _, err := fmtSscanf(id, "$chain%d", &n); err == nil {
		return &event.PDU{EventID: id, RoomID: "!r:a", Sender: alice, Type: authrules.TypePowerLevels, StateKey: ptr(""),
			Content: []byte(`{}`), AuthEvents: []string{chainID(n + 1)}, Version: c.rv}, false, true
	}
	return nil, false, false
}

func TestCyclesAndCap(t *testing.T) {
	rv := roomVersion("10")
	mk := func(id, typ, sk string, auth ...string) *event.PDU {
		return &event.PDU{EventID: id, RoomID: "!r:a", Sender: alice, Type: typ, StateKey: ptr(sk),
			Content: []byte(`{"membership":"leave"}`), AuthEvents: auth, Version: rv}
	}
	l := &cycleLoader{rv: rv, evs: map[string]*event.PDU{}}
	for _, ev := range []*event.PDU{
		mk("$a", authrules.TypePowerLevels, "", "$b"),
		mk("$b", authrules.TypePowerLevels, "", "$c"),
		mk("$c", authrules.TypePowerLevels, "", "$a"),
		mk("$m", authrules.TypeMember, bob, "$a", "$m2"),
		mk("$m2", authrules.TypeMember, bob, "$m"),
	} {
		l.evs[ev.EventID] = ev
	}
	sets := []StateMap{
		{k(authrules.TypePowerLevels, ""): "$a", k(authrules.TypeMember, bob): "$m"},
		{k(authrules.TypePowerLevels, ""): "$b", k(authrules.TypeMember, bob): "$m2", k("x", ""): "$c"},
	}
	for _, v := range allVersions {
		if _, err := Resolve(roomVersion(v), sets, l); err != nil {
			t.Fatalf("v%s cycle: %v", v, err)
		}
	}
	deep := []StateMap{{k(authrules.TypePowerLevels, ""): chainID(0)}, {k(authrules.TypePowerLevels, ""): "$a"}}
	if _, err := Resolve(rv, deep, l); !errors.Is(err, ErrTooManyEvents) {
		t.Fatalf("unbounded chain: %v, want ErrTooManyEvents", err)
	}
}

// The full auth chain of a state set holds the set's own events (Synapse's
// reading, see authDifference): eve's join is in both sets, cited by the
// join rules eve changes on one branch only. Were it in the auth difference,
// it would join step 1's power set and be sorted before the join rules
// change that needs it, letting mallory's join (sorted next to it) through
// under the old public join rules, and carol's kick, checked after bob's
// power levels that raise the kick level, fail: mallory would stay joined.
// Read as Synapse does, the invite-only join rules come first and refuse
// mallory's join, and the kick is refused too: mallory's membership, as
// conflicted as it is, resolves to none, on every server.
func TestAuthDifferenceCountsStateSetEvents(t *testing.T) {
	for _, v := range []string{"10", "11"} {
		t.Run("v"+v, func(t *testing.T) {
			d, h := newDAG(t, v, map[string]int{bob: 100, carol: 50})
			for _, u := range []string{bob, carol, mallory, eve} {
				d.must(h, u+".join", u, authrules.TypeMember, u, member("join"))
			}
			a, b := h.fork(), h.fork()
			d.must(a, "kick.mallory", carol, authrules.TypeMember, mallory, member("leave"))
			d.must(b, "pl.bob", bob, authrules.TypePowerLevels, "", plContent(levels(d, map[string]int{bob: 100, eve: 100}), map[string]int{"kick": 100}))
			d.must(b, "jr.invite", eve, authrules.TypeJoinRules, "", `{"join_rule":"invite"}`)
			got := expect(t, d, []StateMap{a.state, b.state}, map[authrules.StateKey]*event.PDU{
				k(authrules.TypeMember, mallory): nil,
			})
			ref, _ := refResolve(d.rv, []StateMap{a.state, b.state}, d, refOptions{})
			if !maps.Equal(got, ref) {
				t.Fatalf("resolved %s, the reference %s", d.describe(got), d.describe(ref))
			}
		})
	}
}
