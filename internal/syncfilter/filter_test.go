package syncfilter

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"conclave/internal/matrix"
	"conclave/internal/store"
)

func errcode(err error) string {
	if me, ok := matrix.AsError(err); ok {
		return me.Code
	}
	if err != nil {
		return "non-matrix: " + err.Error()
	}
	return ""
}

func TestParseErrors(t *testing.T) {
	long := `"` + strings.Repeat("a", MaxStringLen+1) + `"`
	many := "[" + strings.Repeat(`"m.x",`, MaxListLen) + `"m.x"]`
	for _, tc := range []struct{ in, code string }{
		{`{}`, ""},
		{`{"room":null,"presence":null}`, ""},
		{``, "M_NOT_JSON"},
		{`{"room":`, "M_NOT_JSON"},
		{"{\"event_fields\":[\"\xff\"]}", "M_NOT_JSON"},
		{`[]`, "M_BAD_JSON"},
		{`"x"`, "M_BAD_JSON"},
		{`{"event_fields":"type"}`, "M_BAD_JSON"},
		{`{"event_fields":[""]}`, "M_BAD_JSON"},
		{`{"event_format":"client"}`, ""},
		{`{"event_format":"federation"}`, "M_INVALID_PARAM"}, // not implemented: refused, not ignored
		{`{"event_format":"xml"}`, "M_BAD_JSON"},
		{`{"event_format":1}`, "M_BAD_JSON"},
		{`{"presence":[]}`, "M_BAD_JSON"},
		{`{"presence":{"limit":5}}`, ""},
		{`{"presence":{"limit":5.0}}`, ""},
		{`{"presence":{"limit":0}}`, ""},
		{`{"presence":{"limit":5.5}}`, "M_BAD_JSON"},
		{`{"presence":{"limit":-1}}`, "M_BAD_JSON"},
		{`{"presence":{"limit":1e20}}`, "M_BAD_JSON"},
		{`{"presence":{"limit":"5"}}`, "M_BAD_JSON"},
		{`{"presence":{"senders":["@a:b"]}}`, ""},
		{`{"presence":{"senders":["a"]}}`, "M_BAD_JSON"},
		{`{"presence":{"not_senders":[1]}}`, "M_BAD_JSON"},
		{`{"account_data":{"types":{"a":1}}}`, "M_BAD_JSON"},
		{`{"account_data":{"types":[` + long + `]}}`, "M_BAD_JSON"},
		{`{"account_data":{"types":` + many + `}}`, "M_BAD_JSON"},
		{`{"room":{"rooms":["!a:b"],"not_rooms":["!c"]}}`, ""},
		{`{"room":{"rooms":["a:b"]}}`, "M_BAD_JSON"},
		{`{"room":{"include_leave":1}}`, "M_BAD_JSON"},
		{`{"room":{"timeline":[]}}`, "M_BAD_JSON"},
		{`{"room":{"timeline":{"contains_url":"true"}}}`, "M_BAD_JSON"},
		{`{"room":{"state":{"lazy_load_members":1}}}`, "M_BAD_JSON"},
		{`{"room":{"state":{"include_redundant_members":"no"}}}`, "M_BAD_JSON"},
		{`{"room":{"ephemeral":{"not_rooms":["bad"]}}}`, "M_BAD_JSON"},
		{`{"room":{"account_data":{"senders":[null]}}}`, "M_BAD_JSON"},
		{`{"room":{"timeline":{"unread_thread_notifications":true}},"org.example":1}`, ""},
	} {
		_, err := Parse([]byte(tc.in))
		if got := errcode(err); got != tc.code {
			t.Errorf("Parse(%.60s): got %q (%v), want %q", tc.in, got, err, tc.code)
		}
	}
}

func TestParseFields(t *testing.T) {
	f, err := Parse([]byte(`{
		"event_fields": ["type"], "event_format": "client",
		"presence": {"types": []},
		"account_data": {"not_types": ["m.*"], "limit": 3},
		"room": {"rooms": ["!a:x"], "include_leave": true,
			"timeline": {"limit": 50, "senders": ["@u:x"], "contains_url": false},
			"state": {"lazy_load_members": true, "include_redundant_members": true},
			"ephemeral": {"not_types": ["m.typing"]},
			"account_data": {"types": ["m.tag"]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if f.EventFormat != "client" || !f.IncludeLeave() || !f.LazyLoadMembers() || !f.IncludeRedundantMembers() {
		t.Fatalf("flags: %+v", f)
	}
	if f.Timeline().LimitOr(10, 100) != 50 || f.Timeline().LimitOr(10, 20) != 20 || f.Ephemeral().LimitOr(10, 100) != 10 {
		t.Fatal("limits")
	}
	if f.AccountDataFilter().LimitOr(10, 100) != 3 || f.PresenceFilter().Types == nil || len(f.PresenceFilter().Types) != 0 {
		t.Fatalf("event filters: %+v %+v", f.AccountData, f.Presence)
	}
	if !f.RoomAccountData().MatchType("m.tag") || f.RoomAccountData().MatchType("m.other") {
		t.Fatal("room account data types")
	}
	// Round trip through MarshalJSON.
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	g, err := Parse(b)
	if err != nil || !reflect.DeepEqual(f, g) {
		t.Fatalf("round trip:\n%+v\n%+v (%v)\n%s", f, g, err, b)
	}
}

func TestNilFilters(t *testing.T) {
	var f *Filter
	if !f.Timeline().Match("!r:x", "m.room.message", "@u:x", false) || f.LazyLoadMembers() || f.IncludeLeave() {
		t.Fatal("nil filter must match everything with defaults")
	}
	if f.Timeline().LimitOr(DefaultLimit, 100) != 10 || !f.RoomFilter().MatchRoom("!r:x") || !f.PresenceFilter().Match("m.presence", "@u:x") {
		t.Fatal("nil accessors")
	}
	if (&Filter{Room: &RoomFilter{State: &RoomEventFilter{IncludeRedundantMembers: true}}}).IncludeRedundantMembers() {
		t.Fatal("include_redundant_members without lazy loading")
	}
}

func TestMatch(t *testing.T) {
	yes, no := true, false
	for _, tc := range []struct {
		name              string
		f                 RoomEventFilter
		room, typ, sender string
		url               bool
		want              bool
	}{
		{"empty filter", RoomEventFilter{}, "!r", "m.x", "@a", false, true},
		{"types exact", RoomEventFilter{EventFilter: EventFilter{Types: []string{"m.x"}}}, "!r", "m.x", "@a", false, true},
		{"types miss", RoomEventFilter{EventFilter: EventFilter{Types: []string{"m.y"}}}, "!r", "m.x", "@a", false, false},
		{"empty types matches nothing", RoomEventFilter{EventFilter: EventFilter{Types: []string{}}}, "!r", "m.x", "@a", false, false},
		{"wildcard suffix", RoomEventFilter{EventFilter: EventFilter{Types: []string{"m.room.*"}}}, "!r", "m.room.message", "@a", false, true},
		{"wildcard all", RoomEventFilter{EventFilter: EventFilter{Types: []string{"*"}}}, "!r", "anything", "@a", false, true},
		{"wildcard middle", RoomEventFilter{EventFilter: EventFilter{Types: []string{"m.*.member"}}}, "!r", "m.room.member", "@a", false, true},
		{"wildcard middle miss", RoomEventFilter{EventFilter: EventFilter{Types: []string{"m.*.member"}}}, "!r", "m.room.name", "@a", false, false},
		{"not_types wins", RoomEventFilter{EventFilter: EventFilter{Types: []string{"m.*"}, NotTypes: []string{"m.room.*"}}}, "!r", "m.room.name", "@a", false, false},
		{"not_types star", RoomEventFilter{EventFilter: EventFilter{NotTypes: []string{"*"}}}, "!r", "x", "@a", false, false},
		{"senders", RoomEventFilter{EventFilter: EventFilter{Senders: []string{"@a"}}}, "!r", "m.x", "@a", false, true},
		{"senders miss", RoomEventFilter{EventFilter: EventFilter{Senders: []string{"@b"}}}, "!r", "m.x", "@a", false, false},
		{"not_senders wins", RoomEventFilter{EventFilter: EventFilter{Senders: []string{"@a"}, NotSenders: []string{"@a"}}}, "!r", "m.x", "@a", false, false},
		{"rooms", RoomEventFilter{Rooms: []string{"!r"}}, "!r", "m.x", "@a", false, true},
		{"rooms miss", RoomEventFilter{Rooms: []string{"!s"}}, "!r", "m.x", "@a", false, false},
		{"empty rooms", RoomEventFilter{Rooms: []string{}}, "!r", "m.x", "@a", false, false},
		{"not_rooms wins", RoomEventFilter{Rooms: []string{"!r"}, NotRooms: []string{"!r"}}, "!r", "m.x", "@a", false, false},
		{"contains_url true", RoomEventFilter{ContainsURL: &yes}, "!r", "m.x", "@a", true, true},
		{"contains_url true miss", RoomEventFilter{ContainsURL: &yes}, "!r", "m.x", "@a", false, false},
		{"contains_url false", RoomEventFilter{ContainsURL: &no}, "!r", "m.x", "@a", false, true},
		{"contains_url false miss", RoomEventFilter{ContainsURL: &no}, "!r", "m.x", "@a", true, false},
	} {
		if got := tc.f.Match(tc.room, tc.typ, tc.sender, tc.url); got != tc.want {
			t.Errorf("%s: got %v", tc.name, got)
		}
	}
}

func TestMatchWildcard(t *testing.T) {
	for _, tc := range []struct {
		p, s string
		want bool
	}{
		{"", "", true}, {"", "a", false}, {"*", "", true}, {"a", "a", true}, {"a", "ab", false},
		{"a*", "abc", true}, {"*c", "abc", true}, {"a*c", "abbbc", true}, {"a*c", "abbb", false},
		{"*a*b*", "xxaxxbxx", true}, {"*a*b*", "xxbxxaxx", false}, {"m.room.*", "m.room.", true},
		{"a**b", "ab", true}, {"*.*", "m", false},
		{strings.Repeat("*a", 50) + "b", strings.Repeat("a", 200), false},
	} {
		if got := MatchWildcard(tc.p, tc.s); got != tc.want {
			t.Errorf("MatchWildcard(%q, %q) = %v", tc.p, tc.s, got)
		}
	}
}

func TestLimitOr(t *testing.T) {
	five, big := 5, 5000
	for _, tc := range []struct {
		f        *EventFilter
		def, max int
		want     int
	}{
		{nil, 10, 100, 10}, {&EventFilter{}, 10, 100, 10}, {&EventFilter{Limit: &five}, 10, 100, 5},
		{&EventFilter{Limit: &big}, 10, 100, 100}, {nil, 10, 3, 3},
	} {
		if got := tc.f.LimitOr(tc.def, tc.max); got != tc.want {
			t.Errorf("LimitOr: got %d want %d", got, tc.want)
		}
	}
}

func TestContainsURL(t *testing.T) {
	for in, want := range map[string]bool{
		`{"url":"mxc://a/b"}`: true, `{"url":5}`: false, `{"url":null}`: false, `{}`: false, `[]`: false, `nope`: false,
	} {
		if ContainsURL(json.RawMessage(in)) != want {
			t.Errorf("ContainsURL(%s) != %v", in, want)
		}
	}
}

func TestFromQuery(t *testing.T) {
	stored := map[string]string{"0": `{"room":{"timeline":{"limit":7}}}`}
	get := func(_ context.Context, userID, id string) (json.RawMessage, error) {
		if s, ok := stored[id]; ok && userID == "@a:x" {
			return json.RawMessage(s), nil
		}
		return nil, store.ErrNotFound
	}
	ctx := context.Background()
	if f, err := FromQuery(ctx, "", "@a:x", get); f != nil || err != nil {
		t.Fatal("empty param")
	}
	if f, err := FromQuery(ctx, "0", "@a:x", get); err != nil || f.Timeline().LimitOr(10, 100) != 7 {
		t.Fatalf("stored: %v", err)
	}
	if f, err := FromQuery(ctx, `{"room":{"timeline":{"limit":3}}}`, "@a:x", get); err != nil || f.Timeline().LimitOr(10, 100) != 3 {
		t.Fatalf("inline: %v", err)
	}
	if _, err := FromQuery(ctx, "0", "@b:x", get); errcode(err) != "M_INVALID_PARAM" {
		t.Fatalf("other user's filter: %v", err)
	}
	if _, err := FromQuery(ctx, `{"room":`, "@a:x", get); errcode(err) != "M_NOT_JSON" {
		t.Fatalf("bad inline: %v", err)
	}
	if _, err := ParseRoomEventFilter([]byte(`{"lazy_load_members":true,"rooms":["!r:x"]}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseRoomEventFilter([]byte(`{"limit":"x"}`)); errcode(err) != "M_BAD_JSON" {
		t.Fatal("room event filter errors")
	}
}

// FuzzParse checks that any input gives a filter or a 400 Matrix error, never
// a panic, and that accepted filters survive a marshal/parse round trip.
func FuzzParse(f *testing.F) {
	for _, s := range []string{`{}`, `{"room":{"timeline":{"limit":10,"types":["m.*"]}}}`, `{"presence":{"not_senders":["@a:b"]}}`,
		`{"event_fields":["a.b"],"event_format":"client","account_data":{"types":[]}}`, `{"room":{"rooms":["!a:b"],"state":{"lazy_load_members":true}}}`, `[]`, `{"room":null}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		flt, err := Parse(data)
		if err != nil {
			me, ok := matrix.AsError(err)
			if !ok || me.Status != 400 {
				t.Fatalf("error is not a 400 Matrix error: %v", err)
			}
			return
		}
		b, err := json.Marshal(flt)
		if err != nil {
			t.Fatal(err)
		}
		again, err := Parse(b)
		if err != nil || !reflect.DeepEqual(flt, again) {
			t.Fatalf("round trip of %q: %v", data, err)
		}
		flt.Timeline().Match("!r:x", "m.room.message", "@u:x", true)
	})
}

func BenchmarkMatch(b *testing.B) {
	f, err := Parse([]byte(`{"room":{"timeline":{"types":["m.room.message","m.room.encrypted","m.sticker","m.call.*","org.example.*"],
		"not_types":["m.room.redaction"],"not_senders":["@spam1:x","@spam2:x","@spam3:x"],"rooms":["!a:x","!b:x","!c:x","!d:x"]}}}`))
	if err != nil {
		b.Fatal(err)
	}
	tl := f.Timeline()
	b.ReportAllocs()
	for b.Loop() {
		tl.Match("!d:x", "org.example.thing", "@user:x", false)
	}
}

func BenchmarkParse(b *testing.B) {
	data := []byte(`{"room":{"timeline":{"limit":20,"types":["m.room.*"]},"state":{"lazy_load_members":true}},"presence":{"not_types":["*"]}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}

// The cache parses a filter once per (user, filter ID) and once per inline
// filter text; a filter ID of one user is never served to another.
func TestCache(t *testing.T) {
	var c Cache
	gets := 0
	get := func(_ context.Context, userID, id string) (json.RawMessage, error) {
		gets++
		if userID == "@a:x" && id == "1" {
			return json.RawMessage(`{"room":{"timeline":{"limit":7}}}`), nil
		}
		return nil, store.ErrNotFound
	}
	for range 3 {
		f, err := c.FromQuery(context.Background(), "1", "@a:x", get)
		if err != nil || f == nil {
			t.Fatalf("filter 1: %v", err)
		}
	}
	if gets != 1 {
		t.Fatalf("%d fetches for one filter ID, want 1", gets)
	}
	if _, err := c.FromQuery(context.Background(), "1", "@b:x", get); err == nil {
		t.Fatal("another user's filter ID was served from the cache")
	}
	f1, _ := c.FromQuery(context.Background(), `{"presence":{"not_types":["*"]}}`, "@a:x", get)
	f2, _ := c.FromQuery(context.Background(), `{"presence":{"not_types":["*"]}}`, "@b:x", get)
	if f1 == nil || f1 != f2 {
		t.Fatal("inline filter not shared from the cache")
	}
	if _, err := c.FromQuery(context.Background(), `{"room":1}`, "@a:x", get); err == nil {
		t.Fatal("bad inline filter accepted")
	}
	if f, err := c.FromQuery(context.Background(), "", "@a:x", get); f != nil || err != nil {
		t.Fatal("empty filter param")
	}
}
