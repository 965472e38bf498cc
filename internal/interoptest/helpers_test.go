package interoptest

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"conclave/internal/config"
	"conclave/internal/homeserver/hstest"
)

// waitLimit bounds every wait for something to cross between the servers;
// it is a failure bound, not a timing assertion. Dendrite's first request
// to a server fetches its keys, and a loaded machine is slow.
const waitLimit = 30 * time.Second

// pair is one Conclave and one Dendrite federating over loopback: the
// Conclave's closed circle is the two names, each verifies the other's
// certificate against the test CA.
type pair struct {
	c *hstest.Server
	d *Dendrite
}

func startPair(t *testing.T) pair {
	t.Helper()
	bin := Binary(t)
	name := ReserveName(t)
	cs := hstest.StartFederation(t, 1, func(c *config.Config) {
		c.FederationAllow = append(c.FederationAllow, name)
	})
	d := StartDendrite(t, bin, name, cs[0].CA)
	return pair{c: cs[0], d: d}
}

// side is one user of one server, following its own /sync.
type side struct {
	t     *testing.T
	s     *hstest.Server
	u     *hstest.User
	since string
	txn   int
	rooms map[string]*roomView
}

// roomView is what a user's /sync said about a room so far.
type roomView struct {
	membership string // join, invite, leave
	timeline   []syncEvent
	ephemeral  []syncEvent
	inviteFrom string // the sender of the invite, from invite_state
}

type syncEvent struct {
	Type     string          `json:"type"`
	EventID  string          `json:"event_id"`
	Sender   string          `json:"sender"`
	StateKey *string         `json:"state_key"`
	Content  json.RawMessage `json:"content"`
	Redacts  string          `json:"redacts"` // top level: room versions before 11
}

func (e syncEvent) membership() string {
	var c struct{ Membership string }
	json.Unmarshal(e.Content, &c)
	return c.Membership
}

func (e syncEvent) body() string {
	var c struct{ Body string }
	json.Unmarshal(e.Content, &c)
	return c.Body
}

func register(t *testing.T, s *hstest.Server, localpart string) *side {
	t.Helper()
	u := s.Register(t, localpart)
	if u.UserID == "" || u.Token == "" {
		t.Fatalf("register %s on %s: no user ID or token", localpart, s.ServerName)
	}
	y := &side{t: t, s: s, u: u, rooms: map[string]*roomView{}}
	y.sync(0)
	return y
}

func (y *side) room(id string) *roomView {
	r := y.rooms[id]
	if r == nil {
		r = &roomView{}
		y.rooms[id] = r
	}
	return r
}

// sync runs one /sync from the last token and records what it says.
func (y *side) sync(timeout time.Duration) {
	t := y.t
	t.Helper()
	q := url.Values{"timeout": {fmt.Sprint(timeout.Milliseconds())}}
	if y.since != "" {
		q.Set("since", y.since)
	}
	r := y.s.MustOK(t, "GET", "/_matrix/client/v3/sync?"+q.Encode(), y.u.Token, nil)
	var out struct {
		NextBatch string `json:"next_batch"`
		Rooms     struct {
			Join map[string]struct {
				Timeline  struct{ Events []syncEvent } `json:"timeline"`
				Ephemeral struct{ Events []syncEvent } `json:"ephemeral"`
			} `json:"join"`
			Invite map[string]struct {
				InviteState struct{ Events []syncEvent } `json:"invite_state"`
			} `json:"invite"`
			Leave map[string]struct {
				Timeline struct{ Events []syncEvent } `json:"timeline"`
			} `json:"leave"`
		} `json:"rooms"`
	}
	if err := json.Unmarshal(r.Body, &out); err != nil {
		t.Fatalf("sync on %s: %v", y.s.ServerName, err)
	}
	if out.NextBatch == "" {
		t.Fatalf("sync on %s: no next_batch: %s", y.s.ServerName, r.Body)
	}
	y.since = out.NextBatch
	for id, j := range out.Rooms.Join {
		v := y.room(id)
		v.membership = "join"
		v.timeline = append(v.timeline, j.Timeline.Events...)
		v.ephemeral = append(v.ephemeral, j.Ephemeral.Events...)
	}
	for id, inv := range out.Rooms.Invite {
		v := y.room(id)
		v.membership = "invite"
		for _, e := range inv.InviteState.Events {
			if e.Type == "m.room.member" && e.StateKey != nil && *e.StateKey == y.u.UserID {
				v.inviteFrom = e.Sender
			}
		}
	}
	for id, l := range out.Rooms.Leave {
		v := y.room(id)
		v.membership = "leave"
		v.timeline = append(v.timeline, l.Timeline.Events...)
	}
}

// waitUntil syncs (long-polling) until cond holds on what was seen, for at
// most waitLimit.
func (y *side) waitUntil(what string, cond func() bool) {
	t := y.t
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			var seen []string
			for id, v := range y.rooms {
				for _, e := range v.timeline {
					seen = append(seen, fmt.Sprintf("%s %s %s %s", id, e.Type, e.EventID, e.Content))
				}
			}
			t.Fatalf("%s (%s) did not see %s within %s; timelines:\n%s", y.u.UserID, y.s.ServerName, what, waitLimit, strings.Join(seen, "\n"))
		}
		y.sync(2 * time.Second)
	}
}

// waitMessage waits for a message with body in the room's timeline.
func (y *side) waitMessage(roomID, body string) syncEvent {
	y.t.Helper()
	var found syncEvent
	y.waitUntil(fmt.Sprintf("message %q in %s", body, roomID), func() bool {
		for _, e := range y.room(roomID).timeline {
			if e.Type == "m.room.message" && e.body() == body {
				found = e
				return true
			}
		}
		return false
	})
	return found
}

// waitEphemeral waits for an ephemeral event of the room that match accepts.
func (y *side) waitEphemeral(roomID, what string, match func(typ string, content json.RawMessage) bool) {
	y.t.Helper()
	y.waitUntil(what, func() bool {
		for _, e := range y.room(roomID).ephemeral {
			if match(e.Type, e.Content) {
				return true
			}
		}
		return false
	})
}

// waitMember waits for userID's membership event with the given membership
// in the room's timeline.
func (y *side) waitMember(roomID, userID, membership string) {
	y.t.Helper()
	y.waitUntil(fmt.Sprintf("%s's %s in %s", userID, membership, roomID), func() bool {
		for _, e := range y.room(roomID).timeline {
			if e.Type == "m.room.member" && e.StateKey != nil && *e.StateKey == userID && e.membership() == membership {
				return true
			}
		}
		return false
	})
}

// waitInvite waits for an invite to the room.
func (y *side) waitInvite(roomID string) *roomView {
	y.t.Helper()
	y.waitUntil("an invite to "+roomID, func() bool { return y.room(roomID).membership == "invite" })
	return y.room(roomID)
}

func (y *side) createRoom(body map[string]any) string {
	y.t.Helper()
	r := y.s.MustOK(y.t, "POST", "/_matrix/client/v3/createRoom", y.u.Token, body)
	id := r.Str("room_id")
	if !strings.HasPrefix(id, "!") {
		y.t.Fatalf("createRoom on %s: %s", y.s.ServerName, r.Body)
	}
	return id
}

// join joins a room through the given servers.
func (y *side) join(roomIDOrAlias string, via ...string) {
	y.t.Helper()
	q := url.Values{}
	for _, v := range via {
		q.Add("server_name", v)
		q.Add("via", v)
	}
	path := hstest.Path("/join/%s", roomIDOrAlias)
	if len(via) > 0 {
		path += "?" + q.Encode()
	}
	r := y.s.Do(y.t, "POST", path, y.u.Token, map[string]any{})
	if r.Status != 200 {
		y.t.Fatalf("%s joins %s on %s: %d %s", y.u.UserID, roomIDOrAlias, y.s.ServerName, r.Status, r.Body)
	}
}

func (y *side) send(roomID, body string) string {
	y.t.Helper()
	y.txn++
	r := y.s.MustOK(y.t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/%s", roomID, fmt.Sprintf("t%d", y.txn)), y.u.Token,
		map[string]any{"msgtype": "m.text", "body": body})
	return r.Str("event_id")
}

func (y *side) invite(roomID, userID string) {
	y.t.Helper()
	r := y.s.Do(y.t, "POST", hstest.Path("/rooms/%s/invite", roomID), y.u.Token, map[string]any{"user_id": userID})
	if r.Status != 200 {
		y.t.Fatalf("%s invites %s to %s: %d %s", y.u.UserID, userID, roomID, r.Status, r.Body)
	}
}

func (y *side) leave(roomID string) {
	y.t.Helper()
	y.s.MustOK(y.t, "POST", hstest.Path("/rooms/%s/leave", roomID), y.u.Token, map[string]any{})
}

// members is the room's joined members as the server answers them.
func (y *side) joinedMembers(roomID string) map[string]bool {
	y.t.Helper()
	r := y.s.MustOK(y.t, "GET", hstest.Path("/rooms/%s/joined_members", roomID), y.u.Token, nil)
	var out struct {
		Joined map[string]json.RawMessage `json:"joined"`
	}
	json.Unmarshal(r.Body, &out)
	m := map[string]bool{}
	for id := range out.Joined {
		m[id] = true
	}
	return m
}
