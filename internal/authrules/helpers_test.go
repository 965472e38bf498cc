package authrules

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"testing"

	"conclave/internal/event"
)

const (
	alice = "@alice:a.example" // creator
	bob   = "@bob:b.example"
	carol = "@carol:c.example"
	dave  = "@dave:a.example"
)

func version(n int) *event.RoomVersion {
	v, ok := event.GetRoomVersion(strconv.Itoa(n))
	if !ok {
		panic(n)
	}
	return v
}

func sk(s string) *string { return &s }

// room is a test room: a state map plus an event factory.
type room struct {
	v      *event.RoomVersion
	n      int
	id     string
	create *event.PDU
	state  StateMap
	seq    int
}

// newRoom creates a room of version n whose creator is alice, with
// extraCreate merged into the create content (a JSON object body without
// braces, e.g. `"m.federate":false`).
func newRoom(n int, extraCreate string) *room {
	r := &room{v: version(n), n: n, state: StateMap{}}
	content := fmt.Sprintf(`"room_version":%q`, r.v.ID)
	if !r.v.CreatorIsSender {
		content = fmt.Sprintf(`"creator":%q,`, alice) + content
	}
	if extraCreate != "" {
		content += "," + extraCreate
	}
	create := &event.PDU{EventID: "$create", Sender: alice, Type: TypeCreate, StateKey: sk(""),
		Content: json.RawMessage("{" + content + "}"), Version: r.v}
	if r.v.RoomIDFromCreateEvent {
		r.id = "!create"
	} else {
		r.id = "!room:a.example"
		create.RoomID = r.id
	}
	r.create = create
	r.state[StateKey{TypeCreate, ""}] = create
	return r
}

// ev builds an event in the room. stateKey nil: a message event.
func (r *room) ev(typ, sender string, stateKey *string, content string) *event.PDU {
	r.seq++
	return &event.PDU{
		EventID: fmt.Sprintf("$e%d", r.seq), RoomID: r.id, Sender: sender, Type: typ, StateKey: stateKey,
		Content: json.RawMessage(content), PrevEvents: []string{"$prev"}, Version: r.v, Depth: int64(r.seq),
	}
}

// set puts a state event into the room state.
func (r *room) set(e *event.PDU) *room {
	r.state[StateKey{e.Type, *e.StateKey}] = e
	return r
}

func (r *room) member(user, membership string) *room {
	return r.set(r.ev(TypeMember, user, sk(user), `{"membership":"`+membership+`"}`))
}

func (r *room) joinRule(rule string) *room {
	return r.set(r.ev(TypeJoinRules, alice, sk(""), `{"join_rule":"`+rule+`"}`))
}

func (r *room) powerLevels(content string) *room {
	return r.set(r.ev(TypePowerLevels, alice, sk(""), content))
}

// standard gives a typical room: alice (creator) joined, power levels with
// alice at 100 (not listed in v12, where she is a creator), bob joined at 50,
// public join rule.
func (r *room) standard() *room {
	r.member(alice, MembershipJoin).member(bob, MembershipJoin).joinRule(JoinRulePublic)
	if r.v.PrivilegedCreators {
		r.powerLevels(`{"users":{"@bob:b.example":50}}`)
	} else {
		r.powerLevels(`{"users":{"@alice:a.example":100,"@bob:b.example":50}}`)
	}
	return r
}

func ruleOf(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Rule
	}
	return "non-authrules error: " + err.Error()
}

// fakeVerifier answers signature questions from fixed tables.
type fakeVerifier struct {
	signedBy map[string]bool // server names the event is signed by
	tpiOK    bool
	gotKeys  []string
}

func (f *fakeVerifier) EventSignedBy(_ *event.PDU, server string) bool { return f.signedBy[server] }
func (f *fakeVerifier) ThirdPartyInviteSigned(_ json.RawMessage, keys []string) bool {
	f.gotKeys = keys
	return f.tpiOK
}

// versions returns the room versions from lo to hi inclusive.
func versions(lo, hi int) []int {
	var out []int
	for i := lo; i <= hi; i++ {
		out = append(out, i)
	}
	return out
}

var allVersions = versions(1, 12)

// ruleCase is one table-test case. build returns the room and the event to
// check; want is the expected failing rule ("" = allowed).
type ruleCase struct {
	name     string
	versions []int
	build    func(r *room) *event.PDU
	verifier Verifier
	want     string
}

func runCases(t *testing.T, cases []ruleCase) {
	t.Helper()
	for _, c := range cases {
		vs := c.versions
		if vs == nil {
			vs = allVersions
		}
		for _, n := range vs {
			t.Run(fmt.Sprintf("%s/v%d", c.name, n), func(t *testing.T) {
				r := newRoom(n, "")
				ev := c.build(r)
				got := ruleOf(CheckWith(ev, r.state, c.verifier))
				if got != c.want {
					t.Fatalf("got rule %q, want %q", got, c.want)
				}
				// The cached-power-levels path must decide the same way.
				if pl, err := ParsePowerLevels(r.v, plContent(r.state), r.state.StateEvent(TypeCreate, "")); err == nil {
					got2 := ruleOf(CheckWith(ev, cachedState{r.state, pl}, c.verifier))
					if got2 != got {
						t.Fatalf("cached path: got rule %q, uncached %q", got2, got)
					}
				}
			})
		}
	}
}

func plContent(s StateGetter) json.RawMessage {
	if e := s.StateEvent(TypePowerLevels, ""); e != nil {
		return e.Content
	}
	return nil
}

type cachedState struct {
	StateMap
	pl *PowerLevels
}

func (c cachedState) CachedPowerLevels() *PowerLevels { return c.pl }

var _ PowerLevelsCache = cachedState{}

func TestHelpersSanity(t *testing.T) {
	r := newRoom(12, "")
	if r.create.RoomID != "" || r.id != "!create" {
		t.Fatal("v12 room set-up")
	}
}
