package stateres

import (
	"os"
	"strconv"
	"testing"
)

func TestDebugSeed(t *testing.T) {
	s := os.Getenv("SEED")
	if s == "" {
		t.Skip()
	}
	seed, _ := strconv.Atoi(s)
	d, sets := randomDAG(t, os.Getenv("RV"), uint64(seed))
	// name all events by order
	for id, ev := range d.events {
		if _, ok := d.names[id]; !ok {
			d.names[id] = id[:6] + "/" + ev.Type[7:] + ":" + short(*ev.StateKey) + "<" + short(ev.Sender) + ">" + string(ev.Content)
		}
	}
	for i, st := range sets {
		t.Logf("set %d: %s", i, d.describe(st))
	}
	for id, ev := range d.events {
		var auth []string
		for _, a := range ev.AuthEvents {
			auth = append(auth, d.name(a))
		}
		t.Logf("%s ts=%d auth=%v", d.name(id), ev.OriginServerTS, auth)
	}
	ours := d.resolve(sets...)
	theirs, err := oracle(d, sets)
	t.Logf("ours   %s", d.describe(diffOnly(ours, theirs)))
	t.Logf("theirs %s %v", d.describe(diffOnly(theirs, ours)), err)
}

func short(s string) string {
	if len(s) > 2 && s[0] == '@' {
		return s[1:3]
	}
	return s
}
