package event

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

func rv(t testing.TB, id string) *RoomVersion {
	t.Helper()
	v, ok := GetRoomVersion(id)
	if !ok {
		t.Fatalf("no room version %s", id)
	}
	return v
}

func canon(t testing.TB, s string) string {
	t.Helper()
	c, err := CanonicalJSON([]byte(s), false)
	if err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return string(c)
}

func TestRedactPerVersion(t *testing.T) {
	const top = `"auth_events":[],"depth":1,"hashes":{"sha256":"x"},"membership":"join","origin":"s","origin_server_ts":1,"prev_events":[],"prev_state":[],"room_id":"!r:s","sender":"@u:s","signatures":{"s":{"ed25519:1":"sig"}},"foo":1,"unsigned":{"age":1},"event_id":"$e"`
	const keptOld = `"auth_events":[],"depth":1,"hashes":{"sha256":"x"},"membership":"join","origin":"s","origin_server_ts":1,"prev_events":[],"prev_state":[],"room_id":"!r:s","sender":"@u:s","signatures":{"s":{"ed25519:1":"sig"}},"event_id":"$e"`
	const keptV11 = `"auth_events":[],"depth":1,"hashes":{"sha256":"x"},"origin_server_ts":1,"prev_events":[],"room_id":"!r:s","sender":"@u:s","signatures":{"s":{"ed25519:1":"sig"}},"event_id":"$e"`

	type exp struct {
		from    int // first room version this expectation applies to
		content string
	}
	cases := []struct {
		typ, stateKey, content string
		want                   []exp // ordered by from
	}{
		{"m.room.member", "@u:s", `{"membership":"join","displayname":"x","join_authorised_via_users_server":"@a:s","third_party_invite":{"display_name":"d","signed":{"mxid":"@u:s","token":"t"}}}`, []exp{
			{1, `{"membership":"join"}`},
			{9, `{"membership":"join","join_authorised_via_users_server":"@a:s"}`},
			{11, `{"membership":"join","join_authorised_via_users_server":"@a:s","third_party_invite":{"signed":{"mxid":"@u:s","token":"t"}}}`},
		}},
		{"m.room.member", "@u:s", `{"membership":"invite","third_party_invite":{"display_name":"d"}}`, []exp{
			{1, `{"membership":"invite"}`},
			{11, `{"membership":"invite","third_party_invite":{}}`},
		}},
		{"m.room.member", "@u:s", `{"membership":"invite","third_party_invite":"weird"}`, []exp{
			{1, `{"membership":"invite"}`},
		}},
		{"m.room.create", "", `{"creator":"@u:s","room_version":"3","m.federate":false,"predecessor":{"room_id":"!o:s"}}`, []exp{
			{1, `{"creator":"@u:s"}`},
			{11, `{"creator":"@u:s","room_version":"3","m.federate":false,"predecessor":{"room_id":"!o:s"}}`},
		}},
		{"m.room.join_rules", "", `{"join_rule":"restricted","allow":[{"type":"m.room_membership","room_id":"!a:s"}],"x":1}`, []exp{
			{1, `{"join_rule":"restricted"}`},
			{8, `{"join_rule":"restricted","allow":[{"type":"m.room_membership","room_id":"!a:s"}]}`},
		}},
		{"m.room.power_levels", "", `{"ban":50,"events":{"m.room.name":100},"events_default":0,"invite":0,"kick":50,"notifications":{"room":50},"redact":50,"state_default":50,"users":{"@u:s":100},"users_default":0,"historical":100}`, []exp{
			{1, `{"ban":50,"events":{"m.room.name":100},"events_default":0,"kick":50,"redact":50,"state_default":50,"users":{"@u:s":100},"users_default":0}`},
			{11, `{"ban":50,"events":{"m.room.name":100},"events_default":0,"invite":0,"kick":50,"redact":50,"state_default":50,"users":{"@u:s":100},"users_default":0}`},
		}},
		{"m.room.history_visibility", "", `{"history_visibility":"shared","x":1}`, []exp{
			{1, `{"history_visibility":"shared"}`},
		}},
		{"m.room.aliases", "s", `{"aliases":["#a:s"],"x":1}`, []exp{
			{1, `{"aliases":["#a:s"]}`},
			{6, `{}`},
		}},
		{"m.room.redaction", "", `{"redacts":"$x","reason":"spam"}`, []exp{
			{1, `{}`},
			{11, `{"redacts":"$x"}`},
		}},
		{"m.room.message", "", `{"body":"hello","msgtype":"m.text"}`, []exp{
			{1, `{}`},
		}},
		{"m.room.name", "", `{"name":"x"}`, []exp{
			{1, `{}`},
		}},
	}
	for _, tc := range cases {
		for v := 1; v <= 12; v++ {
			want := ""
			for _, e := range tc.want {
				if v >= e.from {
					want = e.content
				}
			}
			kept := keptOld
			if v >= 11 {
				kept = keptV11
			}
			sk := ""
			if tc.stateKey != "" || tc.typ != "m.room.message" && tc.typ != "m.room.redaction" {
				sk = fmt.Sprintf(`,"state_key":%q`, tc.stateKey)
			}
			in := fmt.Sprintf(`{%s,"type":%q%s,"content":%s}`, top, tc.typ, sk, tc.content)
			exp := canon(t, fmt.Sprintf(`{%s,"type":%q%s,"content":%s}`, kept, tc.typ, sk, want))
			got, err := Redact(rv(t, fmt.Sprint(v)), []byte(in))
			if err != nil {
				t.Fatalf("v%d %s: %v", v, tc.typ, err)
			}
			if string(got) != exp {
				t.Errorf("v%d %s %s:\n got %s\nwant %s", v, tc.typ, tc.content, got, exp)
			}
			again, err := Redact(rv(t, fmt.Sprint(v)), got)
			if err != nil || !bytes.Equal(again, got) {
				t.Errorf("v%d %s: redaction not idempotent", v, tc.typ)
			}
		}
	}
	// A missing content becomes {}.
	got, err := Redact(rv(t, "10"), []byte(`{"type":"m.room.message","auth_events":[],"sender":"@u:s"}`))
	if err != nil || string(got) != `{"auth_events":[],"content":{},"sender":"@u:s","type":"m.room.message"}` {
		t.Errorf("missing content: %s %v", got, err)
	}
	for _, bad := range []string{`[]`, `{"content":{}}`, `{"type":1}`, `{"type":"x","content":[]}`} {
		if _, err := Redact(rv(t, "10"), []byte(bad)); err == nil {
			t.Errorf("Redact accepted %s", bad)
		}
	}
}

// --- Build / ParsePDU ---

var testKey = func() *SigningKey {
	k, err := NewSigningKey("a_test", bytes.Repeat([]byte{7}, 32))
	if err != nil {
		panic(err)
	}
	return k
}()

func strp(s string) *string { return &s }

func messageProto(roomID string) *Proto {
	return &Proto{
		Type:           "m.room.message",
		Sender:         "@alice:example.org",
		RoomID:         roomID,
		Content:        json.RawMessage(`{"msgtype":"m.text","body":"Hello there, this is a fairly typical message with a bit of text — and an émoji 🎉.","m.mentions":{"user_ids":["@bob:example.org"]}}`),
		PrevEvents:     []string{"$ZGVwdGgtb25lLWRlcHRoLW9uZS1kZXB0aC1vbmUtZGVw"},
		AuthEvents:     []string{"$aGVsbG8gd29ybGQgaGVsbG8gd29ybGQgaGVsbG8gd29y", "$Ym9uam91ciBib25qb3VyIGJvbmpvdXIgYm9uam91cg", "$c2FsdXQgc2FsdXQgc2FsdXQgc2FsdXQgc2FsdXQgc2E"},
		Depth:          1234,
		OriginServerTS: 1700000000000,
	}
}

func checkPDU(t *testing.T, e *PDU) {
	t.Helper()
	if err := CheckContentHash(e); err != nil {
		t.Fatalf("content hash: %v", err)
	}
	if err := VerifyEventSignature(e, "example.org", testKey.ID, testKey.PublicKey()); err != nil {
		t.Fatalf("signature: %v", err)
	}
	if len(e.EventID) != 44 || e.EventID[0] != '$' {
		t.Fatalf("event ID %q", e.EventID)
	}
	enc := base64.RawURLEncoding
	if e.Version.EventIDFormat == 3 {
		enc = base64.RawStdEncoding
	}
	if _, err := enc.Strict().DecodeString(e.EventID[1:]); err != nil {
		t.Fatalf("event ID %q not in the alphabet of format %d", e.EventID, e.Version.EventIDFormat)
	}
	if c, _ := CanonicalJSON(e.Raw, true); !bytes.Equal(c, e.Raw) {
		t.Fatalf("Raw is not canonical")
	}
}

func TestBuildParseMessage(t *testing.T) {
	for v := 3; v <= 12; v++ {
		rv := rv(t, fmt.Sprint(v))
		e, err := messageProto("!room:example.org").Build(rv, "example.org", testKey)
		if err != nil {
			t.Fatalf("v%d: %v", v, err)
		}
		checkPDU(t, e)
		// Other servers send it pretty-printed, with unsigned and event_id.
		var m map[string]any
		_ = json.Unmarshal(e.Raw, &m)
		m["unsigned"] = map[string]any{"age": 12}
		m["event_id"] = "$whatever"
		pretty, _ := json.MarshalIndent(m, "", "  ")
		p, err := ParsePDU(rv, pretty)
		if err != nil {
			t.Fatalf("v%d parse: %v", v, err)
		}
		if p.EventID != e.EventID || !bytes.Equal(p.Raw, e.Raw) || string(p.Unsigned) != `{"age":12}` {
			t.Fatalf("v%d: parse differs: %s vs %s", v, p.EventID, e.EventID)
		}
		p.Unsigned = nil
		if !reflect.DeepEqual(p, e) {
			t.Fatalf("v%d: parsed fields differ:\n%+v\n%+v", v, p, e)
		}
		// Tampering with content breaks the hash, not the signature.
		bad := bytes.Replace(e.Raw, []byte("Hello"), []byte("Jello"), 1)
		pb, err := ParsePDU(rv, bad)
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckContentHash(pb); !errors.Is(err, ErrBadHash) {
			t.Fatalf("tampered content passed the hash check: %v", err)
		}
		if err := VerifyEventSignature(pb, "example.org", testKey.ID, testKey.PublicKey()); err != nil {
			t.Fatalf("content is not signed directly, the signature must hold: %v", err)
		}
		if pb.EventID != e.EventID {
			t.Fatalf("event ID covers the redacted form only")
		}
		// Tampering with a protected key breaks the signature.
		bad = bytes.Replace(e.Raw, []byte(`"depth":1234`), []byte(`"depth":1235`), 1)
		pb, _ = ParsePDU(rv, bad)
		if err := VerifyEventSignature(pb, "example.org", testKey.ID, testKey.PublicKey()); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("tampered depth verified: %v", err)
		}
	}
}

func TestBuildRedactions(t *testing.T) {
	for _, v := range []string{"10", "11"} {
		p := &Proto{Type: "m.room.redaction", Sender: "@a:s", RoomID: "!r:s", Content: json.RawMessage(`{"reason":"spam"}`),
			PrevEvents: []string{}, AuthEvents: []string{}, Depth: 3, OriginServerTS: 5, Redacts: "$target"}
		e, err := p.Build(rv(t, v), "s", testKey)
		if err != nil {
			t.Fatal(err)
		}
		if e.Redacts != "$target" {
			t.Errorf("v%s: Redacts %q", v, e.Redacts)
		}
		top, hasTop := getMember(e.Raw, "redacts")
		inContent, hasContent := getMember(e.Content, "redacts")
		if v == "10" && (!hasTop || string(top) != `"$target"` || hasContent) {
			t.Errorf("v10 must have top-level redacts only: %s", e.Raw)
		}
		if v == "11" && (hasTop || string(inContent) != `"$target"`) {
			t.Errorf("v11 must have content.redacts only: %s", e.Raw)
		}
		r, err := e.Redacted()
		if err != nil {
			t.Fatal(err)
		}
		if (v == "11") != (r.Redacts == "$target") {
			t.Errorf("v%s: redacted Redacts %q", v, r.Redacts)
		}
		ce := AppendClientEvent(nil, e, nil)
		var m map[string]any
		if err := json.Unmarshal(ce, &m); err != nil || m["redacts"] != "$target" {
			t.Errorf("v%s client event lacks top-level redacts: %s", v, ce)
		}
	}
	p := &Proto{Type: "m.room.redaction", Sender: "@a:s", RoomID: "!r:s", Content: json.RawMessage(`{"redacts":"$other"}`), Redacts: "$target"}
	if _, err := p.Build(rv(t, "11"), "s", testKey); err == nil {
		t.Error("conflicting redacts accepted")
	}
	p = &Proto{Type: "m.room.message", Sender: "@a:s", RoomID: "!r:s", Redacts: "$target"}
	if _, err := p.Build(rv(t, "11"), "s", testKey); err == nil {
		t.Error("redacts on a message accepted")
	}
}

func TestV12CreateEvent(t *testing.T) {
	v12 := rv(t, "12")
	create := &Proto{Type: "m.room.create", StateKey: strp(""), Sender: "@alice:example.org",
		Content: json.RawMessage(`{"room_version":"12"}`), PrevEvents: []string{}, AuthEvents: []string{}, Depth: 1, OriginServerTS: 1}
	e, err := create.Build(v12, "example.org", testKey)
	if err != nil {
		t.Fatal(err)
	}
	checkPDU(t, e)
	if _, ok := getMember(e.Raw, "room_id"); ok || e.RoomID != "" {
		t.Fatal("v12 create has a room_id")
	}
	roomID := RoomIDForCreate(e)
	if roomID != "!"+e.EventID[1:] || strings.ContainsAny(roomID, "+/=:") {
		t.Fatalf("room ID %q from %q", roomID, e.EventID)
	}
	ce := AppendClientEvent(nil, e, nil)
	if !bytes.Contains(ce, []byte(`"room_id":"`+roomID+`"`)) {
		t.Errorf("client event lacks the derived room_id: %s", ce)
	}
	msg, err := messageProto(roomID).Build(v12, "example.org", testKey)
	if err != nil {
		t.Fatal(err)
	}
	if RoomIDForCreate(msg) != roomID {
		t.Error("RoomIDForCreate of a non-create event must be its room_id")
	}
	create.RoomID = roomID
	if _, err := create.Build(v12, "example.org", testKey); err == nil {
		t.Error("v12 create with room_id built")
	}
	withRoom := bytes.Replace(e.Raw, []byte(`"sender"`), []byte(`"room_id":"!x","sender"`), 1)
	if _, err := ParsePDU(v12, withRoom); !errors.Is(err, ErrBadEvent) {
		t.Errorf("v12 create with room_id parsed: %v", err)
	}
	// Before v12 a create event needs a room_id.
	create.RoomID = ""
	if _, err := create.Build(rv(t, "11"), "example.org", testKey); err == nil {
		t.Error("v11 create without room_id built")
	}
}

func TestBuildLimits(t *testing.T) {
	v := rv(t, "10")
	long := strings.Repeat("a", 256)
	cases := map[string]func(p *Proto){
		"type":       func(p *Proto) { p.Type = long },
		"state_key":  func(p *Proto) { p.StateKey = &long },
		"sender":     func(p *Proto) { p.Sender = "@" + long + ":example.org" },
		"room_id":    func(p *Proto) { p.RoomID = "!" + long },
		"prev event": func(p *Proto) { p.PrevEvents = []string{"$" + long} },
		"size": func(p *Proto) {
			p.Content = json.RawMessage(`{"body":"` + strings.Repeat("x", MaxPDUSize) + `"}`)
		},
	}
	for name, mutate := range cases {
		p := messageProto("!room:example.org")
		mutate(p)
		if _, err := p.Build(v, "example.org", testKey); !errors.Is(err, ErrTooLarge) {
			t.Errorf("%s: got %v, want ErrTooLarge", name, err)
		}
	}
	bad := map[string]func(p *Proto){
		"no type":       func(p *Proto) { p.Type = "" },
		"foreign":       func(p *Proto) { p.Sender = "@a:elsewhere.org" },
		"not a user":    func(p *Proto) { p.Sender = "alice" },
		"no room":       func(p *Proto) { p.RoomID = "" },
		"neg depth":     func(p *Proto) { p.Depth = -1 },
		"huge depth":    func(p *Proto) { p.Depth = 1 << 53 },
		"21 prev":       func(p *Proto) { p.PrevEvents = make([]string, 21) },
		"11 auth":       func(p *Proto) { p.AuthEvents = make([]string, 11) },
		"content array": func(p *Proto) { p.Content = json.RawMessage(`[]`) },
		"float content": func(p *Proto) { p.Content = json.RawMessage(`{"a":1.5}`) },
		"bad json":      func(p *Proto) { p.Content = json.RawMessage(`{"a":}`) },
	}
	for name, mutate := range bad {
		p := messageProto("!room:example.org")
		mutate(p)
		if _, err := p.Build(v, "example.org", testKey); err == nil {
			t.Errorf("%s: built", name)
		}
	}
	// A 64 KiB event just fits; the limit counts the signed canonical form.
	p := messageProto("!room:example.org")
	small, _ := p.Build(v, "example.org", testKey)
	room := MaxPDUSize - len(small.Raw) + len(`{"msgtype":"m.text","body":""}`) - len(p.Content)
	p.Content = json.RawMessage(`{"msgtype":"m.text","body":"` + strings.Repeat("y", room) + `"}`)
	// the original body is gone, so the event is now exactly MaxPDUSize.
	e, err := p.Build(v, "example.org", testKey)
	if err != nil {
		t.Fatalf("max size: %v", err)
	}
	if len(e.Raw) > MaxPDUSize {
		t.Fatalf("len %d", len(e.Raw))
	}
	p.Content = json.RawMessage(`{"msgtype":"m.text","body":"` + strings.Repeat("y", room+MaxPDUSize-len(e.Raw)+1) + `"}`)
	if _, err := p.Build(v, "example.org", testKey); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("one byte over: %v", err)
	}
	// A v3+ event is not a v1/v2 one (no event_id, no pairs).
	if _, err := ParsePDU(rv(t, "1"), small.Raw); !errors.Is(err, ErrBadEvent) {
		t.Error("a v10 event parsed as v1")
	}
}

func TestParsePDURejects(t *testing.T) {
	v := rv(t, "10")
	good, _ := messageProto("!room:example.org").Build(v, "example.org", testKey)
	var m map[string]json.RawMessage
	_ = json.Unmarshal(good.Raw, &m)
	mutate := func(k, val string) []byte {
		c := map[string]json.RawMessage{}
		for kk, vv := range m {
			c[kk] = vv
		}
		if val == "" {
			delete(c, k)
		} else {
			c[k] = json.RawMessage(val)
		}
		b, _ := json.Marshal(c)
		return b
	}
	for _, k := range []string{"type", "sender", "room_id", "content", "depth", "origin_server_ts", "prev_events", "auth_events", "hashes", "signatures"} {
		if _, err := ParsePDU(v, mutate(k, "")); !errors.Is(err, ErrBadEvent) {
			t.Errorf("missing %s: %v", k, err)
		}
	}
	wrong := map[string]string{
		"type": `1`, "sender": `"alice"`, "room_id": `"room"`, "content": `"x"`, "depth": `-1`,
		"origin_server_ts": `"now"`, "prev_events": `[["$a",{}]]`, "auth_events": `"$a"`,
		"hashes": `{"sha512":"x"}`, "signatures": `{"s":"x"}`, "state_key": `null`,
	}
	for k, val := range wrong {
		if _, err := ParsePDU(v, mutate(k, val)); err == nil {
			t.Errorf("%s=%s accepted", k, val)
		}
	}
	// A received state_key is held to 255 code points, as Synapse does:
	// 70 emoji (280 bytes) pass, 256 ASCII characters do not.
	if _, err := ParsePDU(v, mutate("state_key", `"`+strings.Repeat("💥", 70)+`"`)); err != nil {
		t.Errorf("a 70-emoji state_key refused: %v", err)
	}
	if _, err := ParsePDU(v, mutate("state_key", `"`+strings.Repeat("a", 256)+`"`)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("a 256-character state_key: %v", err)
	}
	many := `["$1","$2","$3","$4","$5","$6","$7","$8","$9","$10","$11","$12","$13","$14","$15","$16","$17","$18","$19","$20","$21"]`
	if _, err := ParsePDU(v, mutate("prev_events", many)); err == nil {
		t.Error("21 prev_events accepted")
	}
	if _, err := ParsePDU(v, mutate("depth", `9007199254740992`)); !errors.Is(err, ErrBadJSON) {
		t.Error("v10 depth beyond 2^53-1 accepted")
	}
	if e, err := ParsePDU(rv(t, "5"), mutate("depth", `9007199254740992`)); err != nil || e.Depth != 1<<53 {
		t.Errorf("v5 allows depth up to 2^63-1: %v", err)
	}
	if _, err := ParsePDU(rv(t, "5"), mutate("depth", `9223372036854775808`)); err == nil {
		t.Error("v5 depth beyond 2^63-1 accepted")
	}
	if _, err := ParsePDU(v, mutate("unsigned", `{"big":"`+strings.Repeat("x", MaxPDUSize)+`"}`)); !errors.Is(err, ErrTooLarge) {
		t.Error("oversized complete event accepted")
	}
	if _, err := ParsePDU(v, append(bytes.Repeat([]byte(" "), 4*MaxPDUSize), good.Raw...)); !errors.Is(err, ErrTooLarge) {
		t.Error("oversized input accepted")
	}
	if _, err := ParsePDU(v, mutate("content", `{"a":1,"a":2}`)); !errors.Is(err, ErrBadJSON) {
		t.Error("duplicate keys accepted")
	}
}

// --- property tests over random events ---

func randomProto(r *rand.Rand, v *RoomVersion) *Proto {
	types := []string{"m.room.message", "m.room.member", "m.room.create", "m.room.power_levels", "m.room.join_rules",
		"m.room.history_visibility", "m.room.redaction", "m.room.aliases", "m.room.topic", "com.example.custom"}
	p := &Proto{
		Type:           types[r.IntN(len(types))],
		Sender:         fmt.Sprintf("@user%d:example.org", r.IntN(100)),
		RoomID:         "!room:example.org",
		Depth:          r.Int64N(1 << 40),
		OriginServerTS: r.Int64N(1 << 45),
	}
	for range r.IntN(4) {
		p.PrevEvents = append(p.PrevEvents, fmt.Sprintf("$prev%d", r.IntN(1000)))
	}
	for range r.IntN(5) {
		p.AuthEvents = append(p.AuthEvents, fmt.Sprintf("$auth%d", r.IntN(1000)))
	}
	if p.Type != "m.room.message" && p.Type != "m.room.redaction" || r.IntN(5) == 0 {
		p.StateKey = strp([]string{"", "@user1:example.org", "x\n\"y"}[r.IntN(3)])
	}
	if p.Type == "m.room.create" && v.RoomIDFromCreateEvent {
		p.RoomID = ""
	}
	if p.Type == "m.room.redaction" {
		p.Redacts = fmt.Sprintf("$target%d", r.IntN(10))
	}
	keys := []string{"membership", "join_authorised_via_users_server", "third_party_invite", "creator", "room_version",
		"join_rule", "allow", "ban", "invite", "notifications", "users", "history_visibility", "aliases", "body", "name", "émoji"}
	content := map[string]any{}
	for range r.IntN(6) {
		k := keys[r.IntN(len(keys))]
		switch r.IntN(4) {
		case 0:
			content[k] = r.Int64N(maxSafeInteger)
		case 1:
			content[k] = "v\u00e9\t" + k
		case 2:
			content[k] = map[string]any{"signed": map[string]any{"mxid": "@a:b"}, "display_name": "d"}
		case 3:
			content[k] = []any{1, "two", nil, true}
		}
	}
	p.Content, _ = json.Marshal(content)
	return p
}

func TestBuildParseProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 3000 {
		v := rv(t, fmt.Sprint(3+r.IntN(10)))
		p := randomProto(r, v)
		e, err := p.Build(v, "example.org", testKey)
		if err != nil {
			t.Fatalf("case %d v%s: %v", i, v.ID, err)
		}
		checkPDU(t, e)
		// Round trip, event ID stable.
		q, err := ParsePDU(v, e.Raw)
		if err != nil || !reflect.DeepEqual(q, e) {
			t.Fatalf("case %d: round trip: %v", i, err)
		}
		if e.Type != p.Type || e.Sender != p.Sender || e.RoomID != p.RoomID || e.Depth != p.Depth ||
			e.OriginServerTS != p.OriginServerTS || e.Redacts != p.Redacts ||
			(e.StateKey == nil) != (p.StateKey == nil) || (p.StateKey != nil && *e.StateKey != *p.StateKey) {
			t.Fatalf("case %d: fields differ from the proto", i)
		}
		var c1, c2 any
		_ = json.Unmarshal(p.Content, &c1)
		_ = json.Unmarshal(e.Content, &c2)
		if v.RedactsInContent && p.Type == "m.room.redaction" {
			c1.(map[string]any)["redacts"] = p.Redacts
		}
		if !reflect.DeepEqual(c1, c2) {
			t.Fatalf("case %d: content differs", i)
		}
		// Redaction: idempotent, same event ID, signature still valid.
		red, err := Redact(v, e.Raw)
		if err != nil {
			t.Fatal(err)
		}
		red2, _ := Redact(v, red)
		if !bytes.Equal(red, red2) {
			t.Fatalf("case %d: redaction not idempotent", i)
		}
		rp, err := ParsePDU(v, red)
		if err != nil {
			t.Fatalf("case %d: redacted event does not parse: %v", i, err)
		}
		if rp.EventID != e.EventID {
			t.Fatalf("case %d: redaction changed the event ID", i)
		}
		if err := VerifyEventSignature(rp, "example.org", testKey.ID, testKey.PublicKey()); err != nil {
			t.Fatalf("case %d: redacted event signature: %v", i, err)
		}
		if !bytes.Equal(red, e.Raw) && CheckContentHash(rp) == nil {
			t.Fatalf("case %d: redacted event passed the content hash", i)
		}
		viaMethod, err := e.Redacted()
		if err != nil || !bytes.Equal(viaMethod.Raw, red) || viaMethod.EventID != e.EventID {
			t.Fatalf("case %d: Redacted() differs from Redact: %v", i, err)
		}
		// Client format decodes to the same fields.
		ce := AppendClientEvent(nil, e, []byte(`{"age":5}`))
		var cm map[string]any
		if err := json.Unmarshal(ce, &cm); err != nil {
			t.Fatalf("case %d: client event %s: %v", i, ce, err)
		}
		if cm["event_id"] != e.EventID || cm["sender"] != e.Sender || cm["type"] != e.Type ||
			cm["room_id"] != RoomIDForCreate(e) || cm["origin_server_ts"] != float64(e.OriginServerTS) ||
			!reflect.DeepEqual(cm["content"], c2) || !reflect.DeepEqual(cm["unsigned"], map[string]any{"age": 5.0}) {
			t.Fatalf("case %d: client event fields: %s", i, ce)
		}
		if sk, ok := cm["state_key"]; ok != e.IsState() || (ok && sk != *e.StateKey) {
			t.Fatalf("case %d: client state_key", i)
		}
		noRoom := AppendClientEventWithoutRoomID(nil, e, nil)
		var nm map[string]any
		if err := json.Unmarshal(noRoom, &nm); err != nil || nm["room_id"] != nil || nm["unsigned"] != nil {
			t.Fatalf("case %d: without room ID: %s", i, noRoom)
		}
	}
}

func TestWithSignature(t *testing.T) {
	v := rv(t, "11")
	e, _ := messageProto("!room:example.org").Build(v, "example.org", testKey)
	other, _ := GenerateSigningKey()
	co, err := e.WithSignature("other.org", other)
	if err != nil {
		t.Fatal(err)
	}
	if co.EventID != e.EventID {
		t.Fatal("countersigning changed the event ID")
	}
	p, err := ParsePDU(v, co.Raw)
	if err != nil || p.EventID != e.EventID {
		t.Fatalf("reparse: %v", err)
	}
	for _, s := range []struct {
		server string
		k      *SigningKey
	}{{"example.org", testKey}, {"other.org", other}} {
		if err := VerifyEventSignature(p, s.server, s.k.ID, s.k.PublicKey()); err != nil {
			t.Errorf("%s: %v", s.server, err)
		}
	}
	if err := CheckContentHash(p); err != nil {
		t.Error(err)
	}
}

// --- fuzzing ---

func fuzzSeeds(f *testing.F) {
	v := func(id string) *RoomVersion { r, _ := GetRoomVersion(id); return r }
	for _, id := range []string{"3", "4", "6", "10", "11", "12"} {
		e, err := messageProto("!room:example.org").Build(v(id), "example.org", testKey)
		if err != nil {
			f.Fatal(err)
		}
		n, _ := id2n(id)
		f.Add(e.Raw, n)
	}
	r := rand.New(rand.NewPCG(5, 6))
	for range 10 {
		rvv := v(fmt.Sprint(3 + r.IntN(10)))
		e, err := randomProto(r, rvv).Build(rvv, "example.org", testKey)
		if err != nil {
			f.Fatal(err)
		}
		n, _ := id2n(rvv.ID)
		f.Add(e.Raw, n)
	}
	f.Add([]byte(`{"type":"m.room.member","content":{"membership":"join","third_party_invite":{"signed":{}}}}`), uint8(11))
	f.Add([]byte(`{}`), uint8(10))
}

func id2n(id string) (uint8, error) {
	var n uint8
	_, err := fmt.Sscan(id, &n)
	return n, err
}

func FuzzParsePDU(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte, ver uint8) {
		v, ok := GetRoomVersion(fmt.Sprint(ver % 13))
		if !ok {
			return
		}
		e, err := ParsePDU(v, data)
		if err != nil {
			return
		}
		if len(e.Raw) > MaxPDUSize {
			t.Fatal("Raw larger than MaxPDUSize")
		}
		if c, err := CanonicalJSON(e.Raw, v.StrictCanonicalJSON); err != nil || !bytes.Equal(c, e.Raw) {
			t.Fatalf("Raw not canonical: %v", err)
		}
		again, err := ParsePDU(v, e.Raw)
		if err != nil {
			t.Fatalf("Raw does not reparse: %v", err)
		}
		e.Unsigned = nil
		if !reflect.DeepEqual(again, e) {
			t.Fatal("reparse differs")
		}
		r, err := e.Redacted()
		if err != nil {
			t.Fatalf("Redacted: %v", err)
		}
		rp, err := ParsePDU(v, r.Raw)
		if err != nil || rp.EventID != e.EventID {
			t.Fatalf("redacted event: %v", err)
		}
		_ = CheckContentHash(e)
		_ = VerifyEventSignature(e, "example.org", testKey.ID, testKey.PublicKey())
		_ = AppendClientEvent(nil, e, e.Unsigned)
		if !json.Valid(AppendClientEvent(nil, e, nil)) {
			t.Fatal("client event is not JSON")
		}
	})
}

func FuzzRedact(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte, ver uint8) {
		v, ok := GetRoomVersion(fmt.Sprint(ver % 13))
		if !ok {
			return
		}
		r, err := Redact(v, data)
		if err != nil {
			return
		}
		if c, err := CanonicalJSON(r, v.StrictCanonicalJSON); err != nil || !bytes.Equal(c, r) {
			t.Fatalf("redacted form not canonical: %q %v", r, err)
		}
		r2, err := Redact(v, r)
		if err != nil || !bytes.Equal(r, r2) {
			t.Fatalf("not idempotent: %q -> %q", r, r2)
		}
		it := newObjIter(r)
		for {
			k, _, ok := it.next()
			if !ok {
				break
			}
			if !protectedTopLevel(v, k) {
				t.Fatalf("kept unprotected key %q", k)
			}
		}
	})
}

// --- benchmarks ---

func BenchmarkBuildSign(b *testing.B) {
	v, _ := GetRoomVersion("11")
	p := messageProto("!Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Build(v, "example.org", testKey); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParsePDU(b *testing.B) {
	v, _ := GetRoomVersion("11")
	e, _ := messageProto("!Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ").Build(v, "example.org", testKey)
	b.ReportAllocs()
	b.SetBytes(int64(len(e.Raw)))
	for b.Loop() {
		if _, err := ParsePDU(v, e.Raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyEvent(b *testing.B) {
	v, _ := GetRoomVersion("11")
	e, _ := messageProto("!Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ").Build(v, "example.org", testKey)
	pub := testKey.PublicKey()
	b.ReportAllocs()
	for b.Loop() {
		if err := CheckContentHash(e); err != nil {
			b.Fatal(err)
		}
		if err := VerifyEventSignature(e, "example.org", testKey.ID, pub); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendClientEvent(b *testing.B) {
	v, _ := GetRoomVersion("11")
	e, _ := messageProto("!Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ").Build(v, "example.org", testKey)
	unsigned := []byte(`{"age":1234,"transaction_id":"m123.45"}`)
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendClientEvent(buf[:0], e, unsigned)
	}
	b.SetBytes(int64(len(buf)))
}
