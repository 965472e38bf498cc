package stateres

import (
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"testing"

	"conclave/internal/authrules"
	"conclave/internal/event"
)

// Test users. alice creates every test room.
const (
	alice   = "@alice:a.example"
	bob     = "@bob:b.example"
	carol   = "@carol:c.example"
	dave    = "@dave:d.example"
	eve     = "@eve:e.example"
	mallory = "@mallory:m.example"
)

var testKey = func() *event.SigningKey {
	k, err := event.NewSigningKey("test", make([]byte, 32))
	if err != nil {
		panic(err)
	}
	return k
}()

func roomVersion(id string) *event.RoomVersion {
	v, ok := event.GetRoomVersion(id)
	if !ok {
		panic(id)
	}
	return v
}

func k(typ, stateKey string) authrules.StateKey {
	return authrules.StateKey{Type: typ, StateKey: stateKey}
}

// dag is a test room graph: every event built, and the Loader over them.
type dag struct {
	tb       testing.TB
	rv       *event.RoomVersion
	roomID   string
	create   *event.PDU
	events   map[string]*event.PDU
	rejected map[string]bool
	names    map[string]string // event ID -> test name, for messages
	ts       int64
	seq      int // v1 and v2 event IDs are minted here, in sequence, so a seed is reproducible
}

// v1EventID returns the next event ID of a room version whose event IDs are
// not hashes (empty otherwise: Build derives it).
func (d *dag) v1EventID(server string) string {
	if d.rv.EventIDFormat != 1 {
		return ""
	}
	d.seq++
	return fmt.Sprintf("$e%d:%s", d.seq, server)
}

func (d *dag) Event(id string) (*event.PDU, bool, bool) {
	ev, ok := d.events[id]
	return ev, d.rejected[id], ok
}

// head is the tip of a branch of the room: its state after its last event.
type head struct {
	state StateMap
	prev  []string
	depth int64
}

func (h *head) fork() *head {
	return &head{state: maps.Clone(h.state), prev: append([]string(nil), h.prev...), depth: h.depth}
}

// newDAG creates a room of the version: m.room.create by alice, her join,
// power levels (alice 100 before v12, where she is a creator; the users
// given) and public join rules.
func newDAG(tb testing.TB, version string, users map[string]int) (*dag, *head) {
	d := &dag{tb: tb, rv: roomVersion(version), events: map[string]*event.PDU{}, rejected: map[string]bool{},
		names: map[string]string{}}
	content := `{"room_version":"` + version + `"}`
	if !d.rv.CreatorIsSender {
		content = `{"creator":"` + alice + `","room_version":"` + version + `"}`
	}
	p := event.Proto{Type: authrules.TypeCreate, StateKey: ptr(""), Sender: alice, Content: json.RawMessage(content),
		OriginServerTS: d.nextTS(), EventID: d.v1EventID("a.example")}
	if !d.rv.RoomIDFromCreateEvent {
		p.RoomID = "!room:a.example"
	}
	create, err := p.Build(d.rv, "a.example", testKey)
	if err != nil {
		tb.Fatal(err)
	}
	d.create = create
	d.roomID = p.RoomID
	if d.rv.RoomIDFromCreateEvent {
		d.roomID = event.RoomIDForCreate(create)
	}
	d.add("create", create)
	h := &head{state: StateMap{k(authrules.TypeCreate, ""): create.EventID}, prev: []string{create.EventID}, depth: 1}
	d.must(h, "alice.join", alice, authrules.TypeMember, alice, `{"membership":"join"}`)
	lv := map[string]int{}
	if !d.rv.PrivilegedCreators {
		lv[alice] = 100
	}
	for u, l := range users {
		lv[u] = l
	}
	d.must(h, "pl0", alice, authrules.TypePowerLevels, "", plContent(lv, nil))
	d.must(h, "jr0", alice, authrules.TypeJoinRules, "", `{"join_rule":"public"}`)
	return d, h
}

func ptr(s string) *string { return &s }

func (d *dag) nextTS() int64 { d.ts += 1000; return d.ts }

func (d *dag) add(name string, ev *event.PDU) {
	d.events[ev.EventID] = ev
	if name != "" {
		d.names[ev.EventID] = name
	}
}

// build makes an event on the branch, citing the auth events the branch's
// state gives, without checking or applying it. ts 0 means the next tick.
func (d *dag) build(h *head, sender, typ, stateKey, content string, ts int64) *event.PDU {
	var sk *string
	if typ != "" {
		sk = &stateKey
	}
	var auth []string
	for _, key := range authrules.Needed(d.rv, typ, sk, sender, json.RawMessage(content)) {
		if id, ok := h.state[key]; ok {
			auth = append(auth, id)
		}
	}
	if ts == 0 {
		ts = d.nextTS()
	}
	_, server, _ := strings.Cut(sender, ":")
	p := event.Proto{Type: typ, StateKey: sk, Sender: sender, RoomID: d.roomID, Content: json.RawMessage(content),
		PrevEvents: h.prev, AuthEvents: auth, Depth: h.depth + 1, OriginServerTS: ts, EventID: d.v1EventID(server)}
	ev, err := p.Build(d.rv, server, testKey)
	if err != nil {
		d.tb.Fatal(err)
	}
	return ev
}

// authState is the auth state an event's auth events form.
func (d *dag) authState(ev *event.PDU) authrules.StateMap {
	var auth []*event.PDU
	for _, id := range ev.AuthEvents {
		auth = append(auth, d.events[id])
	}
	return authrules.AuthEventsState(d.rv, auth, d.create)
}

// branchState is the branch's state as events.
func (d *dag) branchState(h *head) authrules.StateMap {
	m := authrules.StateMap{}
	for key, id := range h.state {
		m[key] = d.events[id]
	}
	return m
}

// send builds an event on the branch; if the auth rules allow it against its
// auth events and the branch's state, it is added and applied to the branch
// and returned, otherwise nil.
func (d *dag) send(h *head, name, sender, typ, stateKey, content string) *event.PDU {
	return d.sendAt(h, name, sender, typ, stateKey, content, 0)
}

func (d *dag) sendAt(h *head, name, sender, typ, stateKey, content string, ts int64) *event.PDU {
	ev := d.build(h, sender, typ, stateKey, content, ts)
	if authrules.Check(ev, d.authState(ev)) != nil || authrules.Check(ev, d.branchState(h)) != nil {
		return nil
	}
	d.add(name, ev)
	d.apply(h, ev)
	return ev
}

// must is send that fails the test when the event is not allowed.
func (d *dag) must(h *head, name, sender, typ, stateKey, content string) *event.PDU {
	d.tb.Helper()
	ev := d.send(h, name, sender, typ, stateKey, content)
	if ev == nil {
		d.tb.Fatalf("%s: not allowed", name)
	}
	return ev
}

func (d *dag) apply(h *head, ev *event.PDU) {
	h.state[k(ev.Type, *ev.StateKey)] = ev.EventID
	h.prev = []string{ev.EventID}
	h.depth = ev.Depth
}

// merge makes a head whose prev events are the heads' and whose state is
// their resolution.
func (d *dag) merge(hs ...*head) *head {
	d.tb.Helper()
	var sets []StateMap
	m := &head{}
	for _, h := range hs {
		sets = append(sets, h.state)
		m.prev = append(m.prev, h.prev...)
		m.depth = max(m.depth, h.depth)
	}
	st, err := Resolve(d.rv, sets, d)
	if err != nil {
		d.tb.Fatal(err)
	}
	m.state = st
	return m
}

func (d *dag) name(id string) string {
	if n, ok := d.names[id]; ok {
		return n
	}
	return id
}

// describe renders a state map with test names, sorted, for messages.
func (d *dag) describe(m StateMap) string {
	var parts []string
	for key, id := range m {
		parts = append(parts, fmt.Sprintf("(%s,%s)=%s", strings.TrimPrefix(key.Type, "m.room."), key.StateKey, d.name(id)))
	}
	sortStrings(parts)
	return "{" + strings.Join(parts, " ") + "}"
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func plContent(users map[string]int, extra map[string]int) string {
	m := map[string]any{"users": users}
	for k, v := range extra {
		m[k] = v
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func member(m string) string { return `{"membership":"` + m + `"}` }

// resolve resolves and fails the test on error.
func (d *dag) resolve(sets ...StateMap) StateMap {
	d.tb.Helper()
	st, err := Resolve(d.rv, sets, d)
	if err != nil {
		d.tb.Fatal(err)
	}
	return st
}

func chainID(n int) string { return fmt.Sprintf("$chain%d", n) }

func fmtSscanf(s, format string, a ...any) (int, error) { return fmt.Sscanf(s, format, a...) }
