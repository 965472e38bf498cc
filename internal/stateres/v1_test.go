package stateres

import (
	"crypto/sha1"
	"errors"
	"fmt"
	"maps"
	"testing"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"conclave/internal/authrules"
	"conclave/internal/event"
)

// expectV1 checks the v1 resolution of the sets, in both orders, for the
// keys given (nil: absent), and that gomatrixserverlib agrees.
func expectV1(t *testing.T, d *dag, sets []StateMap, want map[authrules.StateKey]*event.PDU) StateMap {
	t.Helper()
	got := d.resolve(sets...)
	if rev := d.resolve(reversed(sets)...); !maps.Equal(got, rev) {
		t.Fatalf("order of the sets matters:\n %s\n %s", d.describe(got), d.describe(rev))
	}
	if theirs, err := oracleV1(d, sets); err != nil || !maps.Equal(got, theirs) {
		t.Errorf("gomatrixserverlib differs:\n ours   %s\n theirs %s (%v)", d.describe(got), d.describe(theirs), err)
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

// pad sends n topic changes by alice on the branch, to push its depth.
func pad(d *dag, h *head, n int) {
	for i := 0; i < n; i++ {
		d.must(h, "", alice, "m.room.topic", "", fmt.Sprintf(`{"topic":"pad %d"}`, i))
	}
}

// A key present in some of the sets only is no conflict in v1 ("a conflict
// occurs between states where those states have different event_ids for the
// same (event_type, state_key)"): eve's join on one branch stays, though the
// other branch made the room invite-only (v2 refuses it, TestJoinRuleEvasion).
func TestV1OneSidedKeyIsUnconflicted(t *testing.T) {
	d, h := newDAG(t, "1", nil)
	a, b := h.fork(), h.fork()
	jr := d.must(a, "jr.invite", alice, authrules.TypeJoinRules, "", `{"join_rule":"invite"}`)
	join := d.must(b, "eve.join", eve, authrules.TypeMember, eve, member("join"))
	expectV1(t, d, []StateMap{a.state, b.state}, map[authrules.StateKey]*event.PDU{
		k(authrules.TypeJoinRules, ""): jr,
		k(authrules.TypeMember, eve):   join,
	})
}

// The auth blocks go up the depths and stop at the first event R refuses,
// even when a deeper one would pass: alice demotes bob (depth +1), bob's
// power levels (depth +2, allowed on his branch) are refused against alice's,
// so alice's own later change (depth +3) is never looked at.
func TestV1AuthBlockStopsAtFirstRefusal(t *testing.T) {
	d, h := newDAG(t, "1", map[string]int{bob: 50, carol: 50})
	d.must(h, "bob.join", bob, authrules.TypeMember, bob, member("join"))
	d.must(h, "carol.join", carol, authrules.TypeMember, carol, member("join"))
	a, b, c := h.fork(), h.fork(), h.fork()
	demote := d.must(a, "pl.demote.bob", alice, authrules.TypePowerLevels, "", plContent(map[string]int{alice: 100, carol: 50}, nil))
	pad(d, b, 1)
	d.must(b, "pl.bob", bob, authrules.TypePowerLevels, "", plContent(map[string]int{alice: 100, bob: 50, carol: 50, dave: 10}, nil))
	pad(d, c, 2)
	later := d.must(c, "pl.alice.later", alice, authrules.TypePowerLevels, "", plContent(map[string]int{alice: 100, bob: 50, carol: 50, dave: 20}, nil))
	expectV1(t, d, []StateMap{a.state, b.state, c.state}, map[authrules.StateKey]*event.PDU{
		k(authrules.TypePowerLevels, ""): demote,
	})
	// Without bob's change the chain goes on to alice's later one.
	expectV1(t, d, []StateMap{a.state, c.state}, map[authrules.StateKey]*event.PDU{
		k(authrules.TypePowerLevels, ""): later,
	})
}

// A ban cannot be undone by a deeper join through a conflict: the member
// block starts from the ban (shallower) and bob's join, checked with bob
// banned, is refused. His topic, deeper than alice's, then fails the auth
// checks in R (bob banned) and the older topic stays.
func TestV1BanThenTopic(t *testing.T) {
	d, h := newDAG(t, "1", map[string]int{bob: 50})
	d.must(h, "bob.join", bob, authrules.TypeMember, bob, member("join"))
	t1 := d.must(h, "topic.1", alice, "m.room.topic", "", `{"topic":"one"}`)
	a, b := h.fork(), h.fork()
	ban := d.must(a, "ban.bob", alice, authrules.TypeMember, bob, member("ban"))
	d.must(b, "bob.leave", bob, authrules.TypeMember, bob, member("leave"))
	d.must(b, "bob.rejoin", bob, authrules.TypeMember, bob, member("join"))
	d.must(b, "topic.bob", bob, "m.room.topic", "", `{"topic":"bob's"}`)
	expectV1(t, d, []StateMap{a.state, b.state}, map[authrules.StateKey]*event.PDU{
		k(authrules.TypeMember, bob): ban,
		k("m.room.topic", ""):        t1,
	})
}

// Ordinary conflicts take the highest depth, then the lowest SHA-1 of the
// event ID; when no value passes the auth checks, the lowest depth (highest
// SHA-1) one.
func TestV1NormalOrder(t *testing.T) {
	d, h := newDAG(t, "1", map[string]int{bob: 50})
	d.must(h, "bob.join", bob, authrules.TypeMember, bob, member("join"))
	a, b, c := h.fork(), h.fork(), h.fork()
	x := d.must(a, "topic.x", alice, "m.room.topic", "", `{"topic":"x"}`)
	y := d.must(b, "topic.y", alice, "m.room.topic", "", `{"topic":"y"}`)
	pad(d, c, 2)
	deep := c.state[k("m.room.topic", "")]
	expectV1(t, d, []StateMap{a.state, b.state, c.state}, map[authrules.StateKey]*event.PDU{
		k("m.room.topic", ""): d.events[deep],
	})
	lower := x
	if sha(y.EventID) < sha(x.EventID) {
		lower = y
	}
	expectV1(t, d, []StateMap{a.state, b.state}, map[authrules.StateKey]*event.PDU{k("m.room.topic", ""): lower})

	// bob's two topics at one depth, both refused once bob is banned (the
	// ban is unconflicted): the one with the highest SHA-1 is kept.
	e, f, g := h.fork(), h.fork(), h.fork()
	t1 := d.must(e, "topic.bob.1", bob, "m.room.topic", "", `{"topic":"b1"}`)
	t2 := d.must(f, "topic.bob.2", bob, "m.room.topic", "", `{"topic":"b2"}`)
	ban := d.build(g, alice, authrules.TypeMember, bob, member("ban"), 0)
	d.add("ban.bob", ban)
	e.state[k(authrules.TypeMember, bob)] = ban.EventID
	f.state[k(authrules.TypeMember, bob)] = ban.EventID
	_, keep := t1, t2
	if sha(t1.EventID) > sha(t2.EventID) {
		keep = t1
	}
	expectV1(t, d, []StateMap{e.state, f.state}, map[authrules.StateKey]*event.PDU{k("m.room.topic", ""): keep})
}

func sha(id string) string {
	s := sha1.Sum([]byte(id))
	return string(s[:])
}

// Power levels are resolved before join rules, join rules before members,
// each step seeing the results of the one before: carol, a moderator on one
// branch only, makes the room invite-only there, while alice (deeper) drops
// carol's power on the other. The power levels resolve to alice's (allowed
// after carol's, as alice is admin in both), so carol's join rules, checked
// against them, are refused; eve's join, conflicted with her leave, is then
// checked against public join rules and stays.
func TestV1StepsSeeEarlierResults(t *testing.T) {
	d, h := newDAG(t, "1", map[string]int{carol: 50})
	d.must(h, "carol.join", carol, authrules.TypeMember, carol, member("join"))
	d.must(h, "eve.join", eve, authrules.TypeMember, eve, member("join"))
	d.must(h, "eve.leave", eve, authrules.TypeMember, eve, member("leave"))
	jr0 := d.events[h.state[k(authrules.TypeJoinRules, "")]]
	a, b := h.fork(), h.fork()
	d.must(a, "jr.carol", carol, authrules.TypeJoinRules, "", `{"join_rule":"invite"}`)
	pad(d, b, 1)
	pl := d.must(b, "pl.alice", alice, authrules.TypePowerLevels, "", plContent(map[string]int{alice: 100}, map[string]int{"state_default": 50}))
	join := d.must(b, "eve.rejoin", eve, authrules.TypeMember, eve, member("join"))
	expectV1(t, d, []StateMap{a.state, b.state}, map[authrules.StateKey]*event.PDU{
		k(authrules.TypePowerLevels, ""): pl,
		k(authrules.TypeJoinRules, ""):   jr0,
		k(authrules.TypeMember, eve):     join,
	})
}

// Rejected and unknown values are left out: a conflict left with one value
// takes it, one left with none is dropped; an unconflicted rejected event is
// returned as given but never serves as an auth event.
func TestV1RejectedAndUnknown(t *testing.T) {
	d, h := newDAG(t, "1", map[string]int{bob: 50})
	d.must(h, "bob.join", bob, authrules.TypeMember, bob, member("join"))
	a, b, c := h.fork(), h.fork(), h.fork()
	ta := d.must(a, "topic.a", bob, "m.room.topic", "", `{"topic":"a"}`)
	tb := d.must(b, "topic.b", bob, "m.room.topic", "", `{"topic":"b"}`)
	na := d.must(a, "name.a", bob, "m.room.name", "", `{"name":"a"}`)
	nb := d.must(b, "name.b", bob, "m.room.name", "", `{"name":"b"}`)
	d.rejected[ta.EventID] = true
	d.rejected[na.EventID] = true
	delete(d.events, nb.EventID)
	expectV1(t, d, []StateMap{a.state, b.state}, map[authrules.StateKey]*event.PDU{
		k("m.room.topic", ""): tb,
		k("m.room.name", ""):  nil,
	})

	// A value that is not a state event counts as unknown.
	msg := *tb
	msg.StateKey, msg.EventID = nil, "$msg:b.example"
	d.add("msg", &msg)
	withMsg := maps.Clone(a.state)
	withMsg[k("m.room.topic", "")] = msg.EventID
	if got := d.resolve(b.state, withMsg); got[k("m.room.topic", "")] != tb.EventID {
		t.Errorf("topic = %s with a message as the other value, want %s", d.name(got[k("m.room.topic", "")]), d.name(tb.EventID))
	}

	// bob's join rejected, unconflicted: it stays in the state, but bob's
	// conflicted topics are checked without it, both refused: the oldest one
	// is kept.
	d.rejected[h.state[k(authrules.TypeMember, bob)]] = true
	d.rejected[ta.EventID] = false
	cc := c.fork()
	t1 := d.must(c, "topic.c1", bob, "m.room.topic", "", `{"topic":"c1"}`)
	d.must(cc, "topic.cc1", bob, "m.room.topic", "", `{"topic":"cc1"}`)
	d.must(cc, "topic.cc2", bob, "m.room.topic", "", `{"topic":"cc2"}`)
	got := expectV1(t, d, []StateMap{c.state, cc.state}, map[authrules.StateKey]*event.PDU{k("m.room.topic", ""): t1})
	if got[k(authrules.TypeMember, bob)] != h.state[k(authrules.TypeMember, bob)] {
		t.Errorf("the rejected unconflicted join is not returned as given")
	}
}

// The events loaded are capped: a resolution needing more than the cap gets
// ErrTooManyEvents, never unbounded work.
func TestV1Cap(t *testing.T) {
	d, h := newDAG(t, "1", nil)
	a, b := h.fork(), h.fork()
	d.must(a, "topic.a", alice, "m.room.topic", "", `{"topic":"a"}`)
	d.must(b, "topic.b", alice, "m.room.topic", "", `{"topic":"b"}`)
	if _, err := resolve(d.rv, []StateMap{a.state, b.state}, d, 1); !errors.Is(err, ErrTooManyEvents) {
		t.Fatalf("cap 1: %v, want ErrTooManyEvents", err)
	}
	if _, err := resolve(d.rv, []StateMap{a.state, b.state}, d, 10); err != nil {
		t.Fatalf("cap 10: %v", err)
	}
}

// oracleV1 resolves the sets with gomatrixserverlib's state resolution v1
// (ResolveStateConflicts), given the inputs Synapse would: the values of the
// conflicted keys, less the unknown and rejected ones (a key left with one
// value takes it), and as auth events the accepted unconflicted events.
// (ResolveConflictsNew is not used: it hands every auth chain event to the
// resolver as an auth event, the last of a key winning, where Synapse and the
// spec use the unconflicted state; nor does it drop rejected events.)
func oracleV1(d *dag, sets []StateMap) (out StateMap, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("oracle panicked: %v", p)
		}
	}()
	ver := gmsl.MustGetRoomVersion(gmsl.RoomVersion(d.rv.ID))
	pdu := func(id string) gmsl.PDU {
		if d.rejected[id] || d.events[id] == nil {
			return nil
		}
		p, err := ver.NewEventFromTrustedJSON(d.events[id].Raw, false)
		if err != nil {
			panic(err)
		}
		return p
	}
	values := map[authrules.StateKey]map[string]bool{}
	for _, s := range sets {
		for key, id := range s {
			if values[key] == nil {
				values[key] = map[string]bool{}
			}
			values[key][id] = true
		}
	}
	out = StateMap{}
	var conflicted, auth []gmsl.PDU
	for key, ids := range values {
		if len(ids) == 1 {
			for id := range ids {
				out[key] = id
				if p := pdu(id); p != nil {
					auth = append(auth, p)
				}
			}
			continue
		}
		var ps []gmsl.PDU
		for id := range ids {
			if p := pdu(id); p != nil {
				ps = append(ps, p)
			}
		}
		switch len(ps) {
		case 0:
		case 1:
			out[key] = ps[0].EventID()
		default:
			conflicted = append(conflicted, ps...)
		}
	}
	userID := func(_ spec.RoomID, s spec.SenderID) (*spec.UserID, error) { return spec.NewUserID(string(s), true) }
	for _, p := range gmsl.ResolveStateConflicts(conflicted, auth, userID) {
		out[authrules.StateKey{Type: p.Type(), StateKey: *p.StateKey()}] = p.EventID()
	}
	return out, nil
}

// gmslV1Check is authrules.CheckWith with the membership rules
// gomatrixserverlib applies where the spec says otherwise (eventauth.go,
// membershipAllowedSelf, in the version go.mod names):
//
//   - leave-after-leave: "NOTSPEC: Leave -> Leave is benign but not allowed
//     according to the Matrix spec": a user whose membership is leave (or
//     none) may leave again. The spec: "If the sender matches state_key,
//     allow if and only if that user's current membership state is invite,
//     join, or knock" (Synapse agrees: the sender must be in the room).
//   - join-when-in: a user who is invited or joined may join whatever the
//     join rules, also with none in the state; the spec allows it for
//     "invite" and "public" join rules only, and rejects otherwise
//     (Synapse reads a missing join rule as "invite").
func gmslV1Check(ev *event.PDU, st authrules.StateGetter, v authrules.Verifier) error {
	err := authrules.CheckWith(ev, st, v)
	if err == nil || ev.Type != authrules.TypeMember || ev.StateKey == nil || *ev.StateKey != ev.Sender {
		return err
	}
	m, _ := authrules.Membership(ev)
	old := authrules.MembershipLeave
	if cur := st.StateEvent(authrules.TypeMember, ev.Sender); cur != nil {
		old, _ = authrules.Membership(cur)
	}
	if st.StateEvent(authrules.TypeCreate, "") == nil {
		return err
	}
	if m == authrules.MembershipLeave && old == authrules.MembershipLeave {
		return nil
	}
	if m == authrules.MembershipJoin && (old == authrules.MembershipJoin || old == authrules.MembershipInvite) {
		return nil
	}
	return err
}

// compareV1 resolves with this package and gomatrixserverlib: "agree",
// "quirk" (they differ, and resolving with gomatrixserverlib's membership
// rules, gmslV1Check, gives its answer) or "differ".
func compareV1(t *testing.T, d *dag, sets []StateMap, seed uint64) string {
	ours := d.resolve(sets...)
	theirs, err := oracleV1(d, sets)
	if err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}
	if maps.Equal(ours, theirs) {
		return "agree"
	}
	r := &v1resolver{rv: d.rv, load: d, maxEvents: MaxEvents, check: gmslV1Check}
	alt, err := r.resolve(sets)
	if err == nil && maps.Equal(alt, theirs) {
		return "quirk"
	}
	t.Errorf("seed %d differs from gomatrixserverlib:\n ours   %s\n theirs %s", seed,
		d.describe(diffOnly(ours, theirs)), d.describe(diffOnly(theirs, ours)))
	return "differ"
}

// TestOracleV1 resolves random conflicted room version 1 DAGs (the random
// DAGs of the v2 tests, merges resolved with v1) with this package and with
// gomatrixserverlib, and requires the same state, or, where its membership
// rules deviate from the spec's (gmslV1Check), the state this package
// computes with those rules. The two resolutions differ by design only on
// conflicts these DAGs never make (m.room.create, m.room.third_party_invite,
// join rules with a state key; see v1.go).
func TestOracleV1(t *testing.T) {
	n := dagCount(t, 1000)
	count := map[string]int{}
	for seed := uint64(1); seed <= uint64(n); seed++ {
		d, sets := randomDAG(t, "1", seed)
		count[compareV1(t, d, sets, seed)]++
	}
	t.Logf("room version 1: %d DAGs: %d agree with gomatrixserverlib, %d differ by its membership rules, %d otherwise",
		n, count["agree"], count["quirk"], count["differ"])
}

// TestOracleV1Rejected: the same with some events rejected (about a third
// of the values that differ from the first set's, and some of the first
// set's events, which the auth checks look up), the oracle given the same
// rejections.
func TestOracleV1Rejected(t *testing.T) {
	n := dagCount(t, 500)
	count := map[string]int{}
	for seed := uint64(1); seed <= uint64(n); seed++ {
		d, sets := randomDAG(t, "1", seed)
		for _, s := range sets {
			for key, id := range s {
				if sum := sha1.Sum([]byte(id)); sum[0]%3 == 0 && (sets[0][key] != id || sum[1]%4 == 0) {
					d.rejected[id] = true
				}
			}
		}
		count[compareV1(t, d, sets, seed)]++
	}
	t.Logf("room version 1 with rejections: %d DAGs: %d agree with gomatrixserverlib, %d differ by its membership rules, %d otherwise",
		n, count["agree"], count["quirk"], count["differ"])
}
