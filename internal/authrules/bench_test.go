package authrules

import (
	"fmt"
	"strings"
	"testing"
)

// benchRoom: a v10 room with 200 members listed in power levels, a typical
// power levels event and public join rules.
func benchRoom(b *testing.B) *room {
	r := newRoom(10, "")
	r.standard()
	var users []string
	for i := 0; i < 200; i++ {
		u := fmt.Sprintf("@user%d:s%d.example", i, i%7)
		r.member(u, MembershipJoin)
		users = append(users, fmt.Sprintf("%q:%d", u, i%3*25))
	}
	users = append(users, `"@alice:a.example":100`, `"@bob:b.example":50`)
	r.powerLevels(`{"ban":50,"kick":50,"redact":50,"invite":0,"events_default":0,"state_default":50,"users_default":0,` +
		`"events":{"m.room.name":50,"m.room.power_levels":100,"m.room.history_visibility":100,"m.room.canonical_alias":50,"m.room.avatar":50,"m.room.tombstone":100,"m.room.server_acl":100,"m.room.encryption":100},` +
		`"notifications":{"room":50},"users":{` + strings.Join(users, ",") + `}}`)
	return r
}

func BenchmarkCheckMessage(b *testing.B) {
	r := benchRoom(b)
	ev := r.ev("m.room.message", "@user150:s3.example", nil, `{"msgtype":"m.text","body":"hello"}`)
	b.ReportAllocs()
	for b.Loop() {
		if err := Check(ev, r.state); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheckMessageCached(b *testing.B) {
	r := benchRoom(b)
	pl, err := ParsePowerLevels(r.v, plContent(r.state), r.create)
	if err != nil {
		b.Fatal(err)
	}
	st := &cachedState{r.state, pl}
	ev := r.ev("m.room.message", "@user150:s3.example", nil, `{"msgtype":"m.text","body":"hello"}`)
	b.ReportAllocs()
	for b.Loop() {
		if err := Check(ev, st); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheckJoin(b *testing.B) {
	r := benchRoom(b)
	ev := memberEv(r, carol, carol, `{"membership":"join","displayname":"Carol"}`)
	b.ReportAllocs()
	for b.Loop() {
		if err := Check(ev, r.state); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheckPowerLevelsChange(b *testing.B) {
	r := benchRoom(b)
	c := string(plContent(r.state))
	ev := r.ev(TypePowerLevels, alice, sk(""), strings.Replace(c, `"@bob:b.example":50`, `"@bob:b.example":60`, 1))
	b.ReportAllocs()
	for b.Loop() {
		if err := Check(ev, r.state); err != nil {
			b.Fatal(err)
		}
	}
}
