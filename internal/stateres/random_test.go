package stateres

import (
	"math/rand/v2"
	"testing"

	"conclave/internal/authrules"
)

// randomDAG builds a reproducible random room graph of the version and
// returns the states to resolve: a room with a creator, power levels, join
// rules and several members forks into concurrent branches (some forking
// again, some merged back by Resolve) in which random senders change power
// levels, memberships (joins, leaves, invites, kicks, bans, unbans), join
// rules and the topic; events the auth rules refuse on their branch are
// dropped, as a server would.
func randomDAG(tb testing.TB, version string, seed uint64) (*dag, []StateMap) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	users := []string{alice, bob, carol, dave, eve, mallory}
	levels := map[string]int{bob: 100, carol: 50}
	if rng.IntN(2) == 0 {
		levels[dave] = 50
	}
	d, base := newDAG(tb, version, levels)
	// Timestamps collide often, so the event ID tie-break is exercised.
	d.ts = 0
	tick := func() int64 { d.ts += int64(rng.IntN(3)) * 1000; return 1_000_000 + d.ts }
	for _, u := range users[1:] {
		if rng.IntN(5) > 0 {
			d.sendAt(base, "", u, authrules.TypeMember, u, member("join"), tick())
		}
	}
	if rng.IntN(2) == 0 {
		d.sendAt(base, "", alice, "m.room.topic", "", `{"topic":"base"}`, tick())
	}

	pick := func(s []string) string { return s[rng.IntN(len(s))] }
	step := func(h *head) {
		for try := 0; try < 8; try++ {
			sender := pick(users)
			target := pick(users)
			var ev any
			switch rng.IntN(10) {
			case 0, 1, 2: // power levels
				lv := map[string]int{}
				if !d.rv.PrivilegedCreators {
					lv[alice] = 100
				}
				for _, u := range users[1:] {
					if rng.IntN(3) == 0 {
						lv[u] = []int{0, 10, 50, 100}[rng.IntN(4)]
					}
				}
				extra := map[string]int{}
				if rng.IntN(3) == 0 {
					extra["ban"] = []int{10, 50, 100}[rng.IntN(3)]
				}
				if rng.IntN(3) == 0 {
					extra["kick"] = []int{10, 50, 100}[rng.IntN(3)]
				}
				if rng.IntN(4) == 0 {
					extra["invite"] = []int{0, 50}[rng.IntN(2)]
				}
				ev = d.sendAt(h, "", sender, authrules.TypePowerLevels, "", plContent(lv, extra), tick())
			case 3, 4: // another user's membership
				m := []string{"ban", "leave", "invite", "leave", "ban"}[rng.IntN(5)]
				ev = d.sendAt(h, "", sender, authrules.TypeMember, target, member(m), tick())
			case 5, 6: // one's own membership
				m := []string{"join", "leave", "join"}[rng.IntN(3)]
				ev = d.sendAt(h, "", target, authrules.TypeMember, target, member(m), tick())
			case 7: // join rules
				jr := []string{"public", "invite"}[rng.IntN(2)]
				ev = d.sendAt(h, "", sender, authrules.TypeJoinRules, "", `{"join_rule":"`+jr+`"}`, tick())
			default: // topic
				ev = d.sendAt(h, "", sender, "m.room.topic", "", `{"topic":"`+sender+`"}`, tick())
			}
			if ev != nil {
				return
			}
		}
	}

	heads := []*head{base.fork(), base.fork()}
	if rng.IntN(3) == 0 {
		heads = append(heads, base.fork())
	}
	rounds := 1 + rng.IntN(4)
	for round := 0; round < rounds; round++ {
		for _, h := range heads {
			for n := rng.IntN(4); n > 0; n-- {
				step(h)
			}
		}
		switch rng.IntN(4) {
		case 0: // a branch forks
			if len(heads) < 4 {
				heads = append(heads, heads[rng.IntN(len(heads))].fork())
			}
		case 1: // two branches merge
			if len(heads) > 2 {
				i := rng.IntN(len(heads) - 1)
				m := d.merge(heads[i], heads[i+1])
				heads = append(append(heads[:i:i], m), heads[i+2:]...)
			}
		}
	}
	sets := make([]StateMap, len(heads))
	for i, h := range heads {
		sets[i] = h.state
	}
	return d, sets
}
