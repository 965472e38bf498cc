package slidingsync

import (
	"encoding/json"
	"testing"
)

func TestStateSpec(t *testing.T) {
	senders := map[string]bool{"@bob:hs": true}
	cases := []struct {
		pairs    [][2]string
		typ, key string
		want     bool
	}{
		{[][2]string{{"m.room.name", ""}}, "m.room.name", "", true},
		{[][2]string{{"m.room.name", ""}}, "m.room.name", "x", false},
		{[][2]string{{"m.room.name", ""}}, "m.room.topic", "", false},
		{[][2]string{{"*", "*"}}, "anything", "at all", true},
		{[][2]string{{"m.space.child", "*"}}, "m.space.child", "!a:hs", true},
		{[][2]string{{"m.space.child", "*"}}, "m.space.parent", "!a:hs", false},
		{[][2]string{{"*", "$ME"}}, "m.room.member", "@me:hs", true},
		{[][2]string{{"*", ""}}, "m.room.member", "@me:hs", false},
		{[][2]string{{"m.room.member", "$ME"}}, "m.room.member", "@me:hs", true},
		{[][2]string{{"m.room.member", "$ME"}}, "m.room.member", "@bob:hs", false},
		{[][2]string{{"m.room.member", "$LAZY"}}, "m.room.member", "@bob:hs", true},
		{[][2]string{{"m.room.member", "$LAZY"}}, "m.room.member", "@carol:hs", false},
		// Types and keys are opaque strings: no prefix or case folding.
		{[][2]string{{"org.matrix.msc3401.call.member", "*"}}, "org.matrix.msc3401.call", "x", false},
		{[][2]string{{"m.room.name", ""}}, "M.ROOM.NAME", "", false},
		// $LAZY is special only for members.
		{[][2]string{{"m.room.topic", "$LAZY"}}, "m.room.topic", "@bob:hs", false},
	}
	for _, c := range cases {
		if got := newStateSpec(c.pairs, "@me:hs").match(c.typ, c.key, senders); got != c.want {
			t.Errorf("%v match(%s, %s) = %v", c.pairs, c.typ, c.key, got)
		}
	}
	if !newStateSpec(nil, "@me:hs").empty() || newStateSpec([][2]string{{"m.room.member", "$LAZY"}}, "@me:hs").empty() {
		t.Error("empty")
	}
}

func TestConfigMergeAndFingerprint(t *testing.T) {
	var a, b config
	a.merge(&RoomConfig{RequiredState: [][]string{{"m.room.name", ""}, {"m.room.topic", ""}}, TimelineLimit: 1})
	a.merge(&RoomConfig{RequiredState: [][]string{{"m.room.name", ""}, {"m.room.pinned_events", ""}}, TimelineLimit: 20})
	if len(a.RequiredState) != 3 || a.TimelineLimit != 20 {
		t.Fatalf("merge: %+v", a)
	}
	b.merge(&RoomConfig{RequiredState: [][]string{{"m.room.pinned_events", ""}, {"m.room.topic", ""}, {"m.room.name", ""}}, TimelineLimit: 20})
	if a.fingerprint() != b.fingerprint() {
		t.Error("the order of pairs changes the fingerprint")
	}
	c := b
	c.TimelineLimit = 19
	d := config{RequiredState: [][2]string{{"m.room.name", "m.room.topic"}}}
	e := config{RequiredState: [][2]string{{"m.room.name\x00m.room.topic", ""}}}
	if c.fingerprint() == b.fingerprint() || d.fingerprint() == e.fingerprint() || (&config{}).fingerprint() == 0 {
		t.Error("distinct configs share a fingerprint")
	}
}

func TestSortRooms(t *testing.T) {
	rooms := []listRoom{{"!b", 5}, {"!a", 5}, {"!c", 9}, {"!d", 1}}
	sortRooms(rooms)
	want := []string{"!c", "!a", "!b", "!d"}
	for i, r := range rooms {
		if r.id != want[i] {
			t.Fatalf("order %v", rooms)
		}
	}
}

func TestPos(t *testing.T) {
	if c, s, ok := parsePos(formatPos(12, 34)); !ok || c != 12 || s != 34 {
		t.Fatal("round trip")
	}
	for _, bad := range []string{"", "12", "_3", "3_", "a_b", "0_1", "1_0", "-1_2", "1_2_3", "99999999999999999999_1"} {
		if _, _, ok := parsePos(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := []string{
		`{}`,
		`{"lists":{"a":{"ranges":[[0,0],[5,10]],"timeline_limit":1000,"required_state":[["*","*"]]}}}`,
		`{"lists":{"a":{}}}`,
		`{"room_subscriptions":{"!r:hs":{"timeline_limit":20}}}`,
	}
	bad := []string{
		`{"lists":{"a":null}}`,
		`{"lists":{"a":{"ranges":[[1]]}}}`,
		`{"lists":{"a":{"ranges":[[2,1]]}}}`,
		`{"lists":{"a":{"timeline_limit":1001}}}`,
		`{"lists":{"a":{"required_state":[["a","b","c"]]}}}`,
		`{"room_subscriptions":{"#alias:hs":{}}}`,
		`{"extensions":{"to_device":{"enabled":true,"limit":-1}}}`,
		`{"conn_id":"a\u0000b"}`,
		`{"conn_id":"a\nb"}`,
	}
	for _, s := range ok {
		var r Request
		if err := json.Unmarshal([]byte(s), &r); err != nil || r.Validate() != nil {
			t.Errorf("%s refused: %v %v", s, err, r.Validate())
		}
	}
	for _, s := range bad {
		var r Request
		if err := json.Unmarshal([]byte(s), &r); err == nil && r.Validate() == nil {
			t.Errorf("%s accepted", s)
		}
	}
	var f Filters
	json.Unmarshal([]byte(`{"room_types":[]}`), &f)
	if !f.roomTypesSet {
		t.Error("an empty room_types is a filter that matches nothing")
	}
}

// TestStableRequiredState: the stable encoding's required_state — absent
// fields are wildcards, present ones literal, exclude takes from its own
// include only, lazy members are never excluded — merged with an unstable
// config.
func TestStableRequiredState(t *testing.T) {
	str := func(s string) *string { return &s }
	sc := &StableRoomConfig{TimelineLimit: new(int), RequiredState: &StableRequiredState{
		Include:     []StateElement{{}},
		Exclude:     []StateElement{{Type: str("m.room.member")}, {Type: str("m.room.create"), StateKey: str("")}},
		LazyMembers: true,
	}}
	rc, err := sc.config("x")
	if err != nil {
		t.Fatal(err)
	}
	var c config
	c.merge(rc)
	c.merge(&RoomConfig{RequiredState: [][]string{{"m.room.member", "$ME"}}})
	lit := &StableRoomConfig{TimelineLimit: new(int), RequiredState: &StableRequiredState{Include: []StateElement{
		{Type: str("*"), StateKey: str("$ME")}, {StateKey: str("k")},
	}}}
	rl, _ := lit.config("y")
	c.merge(rl)
	senders := map[string]bool{"@bob:hs": true}
	spec := newConfigSpec(&c, "@me:hs")
	for _, k := range []struct {
		typ, key string
		want     bool
	}{
		{"m.room.name", "", true},
		{"m.room.create", "", false},
		{"m.room.create", "other", true},
		{"m.room.member", "@carol:hs", false},
		{"m.room.member", "@bob:hs", true}, // lazy
		{"m.room.member", "@me:hs", true},  // the unstable config's $ME
		{"*", "$ME", true},                 // literal
		{"m.room.member", "$ME", false},    // no member but the lazy and $ME ones
		{"anything", "k", true},
	} {
		if got := spec.match(k.typ, k.key, senders); got != k.want {
			t.Errorf("match(%s, %s) = %v", k.typ, k.key, got)
		}
	}
	var d config
	d.merge(&RoomConfig{RequiredState: [][]string{{"*", "*"}}})
	if d.fingerprint() == c.fingerprint() {
		t.Error("an exclude does not change the fingerprint")
	}
	// Stored configs keep their groups.
	raw, _ := json.Marshal(c)
	var back config
	if json.Unmarshal(raw, &back); back.fingerprint() != c.fingerprint() {
		t.Errorf("round trip: %s", raw)
	}
}

func TestStampsEncoding(t *testing.T) {
	in := map[string]int64{"!a:hs": 1, "!bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb:example.org": 1 << 40, "!c:hs": 0}
	out, ok := decodeStamps(encodeStamps(in))
	if !ok || len(out) != len(in) {
		t.Fatalf("round trip: %v %v", out, ok)
	}
	for k, v := range in {
		if out[k] != v {
			t.Fatalf("%s: %d, want %d", k, out[k], v)
		}
	}
	raw := encodeStamps(in)
	for _, bad := range [][]byte{raw[:len(raw)-1], {0xff}, {5, 'a'}} {
		if _, ok := decodeStamps(bad); ok {
			t.Errorf("garbled %v read", bad)
		}
	}
	if m, ok := decodeStamps(nil); !ok || len(m) != 0 {
		t.Error("empty")
	}
}
