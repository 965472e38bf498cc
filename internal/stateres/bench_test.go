package stateres

import (
	"fmt"
	"testing"

	"conclave/internal/authrules"
)

// BenchmarkResolve2000: a room of 2,000 members whose two branches conflict
// on the power levels (two admins change them concurrently) and on a few
// memberships (a kick, a ban, a leave and a join) and the topic.
func BenchmarkResolve2000(b *testing.B) {
	for _, v := range []string{"11", "12"} {
		b.Run("v"+v, func(b *testing.B) {
			d, h := newDAG(b, v, map[string]int{bob: 100, carol: 50})
			for _, u := range []string{bob, carol} {
				d.must(h, "", u, authrules.TypeMember, u, member("join"))
			}
			for i := 0; i < 2000; i++ {
				u := fmt.Sprintf("@user%d:s%d.example", i, i%20)
				d.must(h, "", u, authrules.TypeMember, u, member("join"))
			}
			x, y := h.fork(), h.fork()
			d.must(x, "", alice, authrules.TypePowerLevels, "", plContent(levels(d, map[string]int{bob: 100, carol: 50, "@user1:s1.example": 50}), nil))
			d.must(x, "", carol, authrules.TypeMember, "@user2:s2.example", member("leave"))
			d.must(x, "", "@user3:s3.example", authrules.TypeMember, "@user3:s3.example", member("leave"))
			d.must(x, "", alice, "m.room.topic", "", `{"topic":"x"}`)
			d.must(y, "", bob, authrules.TypePowerLevels, "", plContent(levels(d, map[string]int{bob: 100, carol: 0}), nil))
			d.must(y, "", bob, authrules.TypeMember, "@user4:s4.example", member("ban"))
			d.must(y, "", "@late:s5.example", authrules.TypeMember, "@late:s5.example", member("join"))
			d.must(y, "", bob, "m.room.topic", "", `{"topic":"y"}`)
			sets := []StateMap{x.state, y.state}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := Resolve(d.rv, sets, d); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
