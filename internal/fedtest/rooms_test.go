// Package fedtest holds the integration tests of federation: several real
// Conclave servers in this process, each with its own database, federation
// listener (TLS from one test CA) and name with a port (localhost:PORT),
// talking over loopback in a closed circle.
package fedtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"testing"
	"time"

	"conclave/internal/homeserver/hstest"
)

// syncer follows one user's /sync.
type syncer struct {
	s     *hstest.Server
	u     *hstest.User
	since string
	// first is the initial sync's answer: waitFor looks there first (what
	// it waits for may have arrived before).
	first *syncResponse
}

func newSyncer(t *testing.T, s *hstest.Server, u *hstest.User) *syncer {
	y := &syncer{s: s, u: u}
	r := y.sync(t, 0)
	y.first = &r
	return y
}

type syncEvent struct {
	Type     string          `json:"type"`
	EventID  string          `json:"event_id"`
	Sender   string          `json:"sender"`
	StateKey *string         `json:"state_key"`
	Content  json.RawMessage `json:"content"`
}

type syncRoom struct {
	Timeline struct {
		Events []syncEvent `json:"events"`
	} `json:"timeline"`
	State struct {
		Events []struct {
			Type     string          `json:"type"`
			StateKey *string         `json:"state_key"`
			Content  json.RawMessage `json:"content"`
		} `json:"events"`
	} `json:"state"`
}

type syncResponse struct {
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Join map[string]syncRoom `json:"join"`
	} `json:"rooms"`
}

func (y *syncer) sync(t *testing.T, timeout time.Duration) syncResponse {
	t.Helper()
	q := url.Values{"timeout": {fmt.Sprint(timeout.Milliseconds())}}
	if y.since != "" {
		q.Set("since", y.since)
	}
	r := y.s.MustOK(t, "GET", "/_matrix/client/v3/sync?"+q.Encode(), y.u.Token, nil)
	var out syncResponse
	if err := json.Unmarshal(r.Body, &out); err != nil {
		t.Fatal(err)
	}
	y.since = out.NextBatch
	return out
}

// waitFor syncs until an event with the given ID (or, with id "", any event
// for which match is true) shows up in roomID's timeline.
func (y *syncer) waitFor(t *testing.T, roomID string, match func(typ, sender string, content json.RawMessage) bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		var res syncResponse
		if y.first != nil {
			res, y.first = *y.first, nil
		} else {
			res = y.sync(t, 2*time.Second)
		}
		for _, ev := range res.Rooms.Join[roomID].Timeline.Events {
			if match(ev.Type, ev.Sender, ev.Content) {
				return
			}
		}
	}
	t.Fatalf("%s never saw the event in %s", y.u.UserID, roomID)
}

func body(text string) func(typ, sender string, content json.RawMessage) bool {
	return func(typ, sender string, content json.RawMessage) bool {
		var c struct {
			Body string `json:"body"`
		}
		return typ == "m.room.message" && json.Unmarshal(content, &c) == nil && c.Body == text
	}
}

func TestJoinAndMessagesAcrossServers(t *testing.T) {
	hs := hstest.StartFederation(t, 2)
	a, b := hs[0], hs[1]
	alice := a.Register(t, "alice")
	bob := b.Register(t, "bob")
	roomID := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat", "name": "Across"}).Str("room_id")
	aliceSync := newSyncer(t, a, alice)
	bobSync := newSyncer(t, b, bob)

	a.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/before", roomID), alice.Token, map[string]any{"msgtype": "m.text", "body": "before bob"})
	joined := b.MustOK(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName), bob.Token, map[string]any{})
	if joined.Str("room_id") != roomID {
		t.Fatalf("join answered %s", joined.Body)
	}
	// Bob's server has the room: its name in the state bob's /sync gives.
	res := bobSync.sync(t, 0)
	jr, ok := res.Rooms.Join[roomID]
	if !ok {
		t.Fatalf("bob's sync after the join has no room: %+v", res.Rooms.Join)
	}
	var name string
	for _, ev := range jr.State.Events {
		if ev.Type == "m.room.name" {
			var c struct {
				Name string `json:"name"`
			}
			json.Unmarshal(ev.Content, &c)
			name = c.Name
		}
	}
	for _, ev := range jr.Timeline.Events {
		if ev.Type == "m.room.name" {
			name = "in timeline"
		}
	}
	if name != "Across" {
		t.Fatalf("bob's room state has name %q: %+v", name, jr.State.Events)
	}
	// Alice sees bob join (her server accepted the send_join).
	aliceSync.waitFor(t, roomID, func(typ, sender string, _ json.RawMessage) bool {
		return typ == "m.room.member" && sender == bob.UserID
	})
	members := a.MustOK(t, "GET", hstest.Path("/rooms/%s/joined_members", roomID), alice.Token, nil)
	var jm struct {
		Joined map[string]any `json:"joined"`
	}
	json.Unmarshal(members.Body, &jm)
	if _, ok := jm.Joined[bob.UserID]; !ok {
		t.Fatalf("alice's server does not list bob as joined: %s", members.Body)
	}
	// Messages both ways, each seen in the other side's /sync.
	a.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/m1", roomID), alice.Token, map[string]any{"msgtype": "m.text", "body": "hello bob"})
	bobSync.waitFor(t, roomID, body("hello bob"))
	b.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/m2", roomID), bob.Token, map[string]any{"msgtype": "m.text", "body": "hello alice"})
	aliceSync.waitFor(t, roomID, body("hello alice"))
	// Bob's /messages back from now reaches what was said before he came.
	msgs := b.MustOK(t, "GET", hstest.Path("/rooms/%s/messages", roomID)+"?dir=b&limit=50", bob.Token, nil)
	var page struct {
		Chunk []struct {
			EventID string `json:"event_id"`
			Type    string `json:"type"`
		} `json:"chunk"`
	}
	json.Unmarshal(msgs.Body, &page)
	var types []string
	for _, e := range page.Chunk {
		types = append(types, e.Type)
	}
	if !slices.Contains(types, "m.room.message") {
		t.Fatalf("bob's /messages: %s", msgs.Body)
	}
}

// An alias of another server is looked up there (/query/directory) and the
// room joined through the servers it names; profiles likewise.
func TestAliasJoinAndProfileAcrossServers(t *testing.T) {
	hs := hstest.StartFederation(t, 2)
	a, b := hs[0], hs[1]
	alice := a.Register(t, "alice")
	bob := b.Register(t, "bob")
	a.MustOK(t, "PUT", "/_matrix/client/v3/profile/"+url.PathEscape(alice.UserID)+"/displayname", alice.Token, map[string]any{"displayname": "Alice A."})
	roomID := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat", "room_alias_name": "ministry"}).Str("room_id")
	alias := "#ministry:" + a.ServerName
	// Another server's alias, unicode included, is asked of that server.
	uni := "#老虎Â£я🤨:" + a.ServerName
	a.MustOK(t, "PUT", "/_matrix/client/v3/directory/room/"+url.PathEscape(uni), alice.Token, map[string]any{"room_id": roomID})
	for _, al := range []string{alias, uni} {
		if got := b.MustOK(t, "GET", "/_matrix/client/v3/directory/room/"+url.PathEscape(al), bob.Token, nil).Str("room_id"); got != roomID {
			t.Fatalf("%s resolves to %q on the other server", al, got)
		}
	}
	joined := b.MustOK(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(alias), bob.Token, map[string]any{})
	if joined.Str("room_id") != roomID {
		t.Fatalf("alias join answered %s", joined.Body)
	}
	if r := b.Do(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape("#nothing:"+a.ServerName), bob.Token, map[string]any{}); r.Status != 404 || r.Errcode() != "M_NOT_FOUND" {
		t.Fatalf("unknown remote alias: %d %s", r.Status, r.Body)
	}
	p := b.MustOK(t, "GET", "/_matrix/client/v3/profile/"+url.PathEscape(alice.UserID), bob.Token, nil)
	if p.Str("displayname") != "Alice A." {
		t.Fatalf("remote profile %s", p.Body)
	}
	if r := b.Do(t, "GET", "/_matrix/client/v3/profile/"+url.PathEscape("@nobody:"+a.ServerName), bob.Token, nil); r.Status != 404 {
		t.Fatalf("unknown remote user's profile: %d %s", r.Status, r.Body)
	}
}

type inviteSync struct {
	Rooms struct {
		Invite map[string]struct {
			InviteState struct {
				Events []struct {
					Type     string          `json:"type"`
					StateKey string          `json:"state_key"`
					Sender   string          `json:"sender"`
					Content  json.RawMessage `json:"content"`
				} `json:"events"`
			} `json:"invite_state"`
		} `json:"invite"`
		Leave map[string]json.RawMessage `json:"leave"`
	} `json:"rooms"`
}

// Invites across servers: the invited user's server signs the invite and
// shows it with the room's stripped state; it is accepted by joining
// through the inviting server, or rejected through it.
func TestInvitesAcrossServers(t *testing.T) {
	hs := hstest.StartFederation(t, 2)
	a, b := hs[0], hs[1]
	alice := a.Register(t, "alice")
	bob := b.Register(t, "bob")
	carol := b.Register(t, "carol")
	roomID := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "private_chat", "name": "Cabinet", "invite": []string{bob.UserID}}).Str("room_id")

	r := b.MustOK(t, "GET", "/_matrix/client/v3/sync", bob.Token, nil)
	var s inviteSync
	json.Unmarshal(r.Body, &s)
	inv, ok := s.Rooms.Invite[roomID]
	if !ok {
		t.Fatalf("bob's sync has no invite: %s", r.Body)
	}
	var name, membership string
	for _, ev := range inv.InviteState.Events {
		switch ev.Type {
		case "m.room.name":
			var c struct{ Name string }
			json.Unmarshal(ev.Content, &c)
			name = c.Name
		case "m.room.member":
			if ev.StateKey == bob.UserID {
				var c struct{ Membership string }
				json.Unmarshal(ev.Content, &c)
				membership = c.Membership
			}
		}
	}
	if name != "Cabinet" || membership != "invite" {
		t.Fatalf("invite state: name %q, membership %q: %s", name, membership, r.Body)
	}
	// Bob accepts: a join through alice's server (the room ID names it).
	b.MustOK(t, "POST", hstest.Path("/rooms/%s/join", roomID), bob.Token, map[string]any{})
	// His join replaces the invite: prev_content shows it, though his
	// server has the invite only as an outlier.
	page := b.MustOK(t, "GET", hstest.Path("/rooms/%s/messages", roomID)+"?dir=b&limit=10", bob.Token, nil)
	var msgs struct {
		Chunk []struct {
			Type     string `json:"type"`
			StateKey string `json:"state_key"`
			Unsigned struct {
				PrevContent struct {
					Membership string `json:"membership"`
				} `json:"prev_content"`
			} `json:"unsigned"`
		} `json:"chunk"`
	}
	json.Unmarshal(page.Body, &msgs)
	prev := "none"
	for _, e := range msgs.Chunk {
		if e.Type == "m.room.member" && e.StateKey == bob.UserID {
			// The newest: his join (the invite before it is history his
			// server backfills once the page reaches it).
			prev = e.Unsigned.PrevContent.Membership
			break
		}
	}
	if prev != "invite" {
		t.Fatalf("bob's join has prev_content membership %q: %s", prev, page.Body)
	}
	members := a.MustOK(t, "GET", hstest.Path("/rooms/%s/joined_members", roomID), alice.Token, nil)
	if !json.Valid(members.Body) || !contains(members.Body, bob.UserID) {
		t.Fatalf("alice's server's members: %s", members.Body)
	}

	// Carol is invited and rejects it: her server leaves through alice's.
	a.MustOK(t, "POST", hstest.Path("/rooms/%s/invite", roomID), alice.Token, map[string]any{"user_id": carol.UserID})
	// Her server is in the room (bob): the invite reaches it in a
	// transaction; her client sees it, then rejects it.
	carolSync := &syncer{s: b, u: carol}
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := b.MustOK(t, "GET", "/_matrix/client/v3/sync?timeout=1000&since="+url.QueryEscape(carolSync.since), carol.Token, nil)
		carolSync.since = r.Str("next_batch")
		var s inviteSync
		json.Unmarshal(r.Body, &s)
		if _, ok := s.Rooms.Invite[roomID]; ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("carol's invite never arrived")
		}
	}
	b.MustOK(t, "POST", hstest.Path("/rooms/%s/leave", roomID), carol.Token, map[string]any{})
	res := carolSync.s.MustOK(t, "GET", "/_matrix/client/v3/sync?since="+carolSync.since, carol.Token, nil)
	json.Unmarshal(res.Body, &s)
	if _, ok := s.Rooms.Leave[roomID]; !ok {
		t.Fatalf("carol's sync after rejecting: %s", res.Body)
	}
	for deadline := time.Now().Add(15 * time.Second); ; {
		state := a.MustOK(t, "GET", hstest.Path("/rooms/%s/state/m.room.member/%s", roomID, carol.UserID), alice.Token, nil)
		if state.Str("membership") == "leave" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("carol's membership on alice's server: %s", state.Body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// An invite rescinded by the inviter (a kick of the invited user)
	// reaches the invited user's server, which is not in the room.
	b2 := b.Register(t, "dave")
	other := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "private_chat", "invite": []string{b2.UserID}}).Str("room_id")
	daveSync := newSyncer(t, b, b2)
	a.MustOK(t, "POST", hstest.Path("/rooms/%s/kick", other), alice.Token, map[string]any{"user_id": b2.UserID, "reason": "sorry"})
	for deadline := time.Now().Add(15 * time.Second); ; {
		r := b.MustOK(t, "GET", "/_matrix/client/v3/sync?timeout=1000&since="+url.QueryEscape(daveSync.since), b2.Token, nil)
		daveSync.since = r.Str("next_batch")
		var s inviteSync
		json.Unmarshal(r.Body, &s)
		if _, ok := s.Rooms.Leave[other]; ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the rescinded invite never left dave's /sync")
		}
	}
	// An invite to a user of a server outside the circle is refused.
	if r := a.Do(t, "POST", hstest.Path("/rooms/%s/invite", roomID), alice.Token, map[string]any{"user_id": "@eve:outside.example"}); r.Status == 200 {
		t.Fatalf("invite outside the circle: %d %s", r.Status, r.Body)
	}
}

func contains(b []byte, s string) bool { return bytes.Contains(b, []byte(s)) }

// Typing notifications and read receipts cross to the other server.
func TestTypingAndReceiptsAcrossServers(t *testing.T) {
	hs := hstest.StartFederation(t, 2)
	a, b := hs[0], hs[1]
	alice := a.Register(t, "alice")
	bob := b.Register(t, "bob")
	roomID := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	b.MustOK(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName), bob.Token, map[string]any{})
	msg := a.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/t1", roomID), alice.Token, map[string]any{"msgtype": "m.text", "body": "read me"}).Str("event_id")
	bobSync := newSyncer(t, b, bob)
	bobSync.waitFor(t, roomID, body("read me"))
	aliceSince := a.MustOK(t, "GET", "/_matrix/client/v3/sync", alice.Token, nil).Str("next_batch")

	b.MustOK(t, "PUT", hstest.Path("/rooms/%s/typing/%s", roomID, bob.UserID), bob.Token, map[string]any{"typing": true, "timeout": 30000})
	b.MustOK(t, "POST", hstest.Path("/rooms/%s/receipt/m.read/%s", roomID, msg), bob.Token, map[string]any{})
	sawTyping, sawReceipt := false, false
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) && !(sawTyping && sawReceipt) {
		r := a.MustOK(t, "GET", "/_matrix/client/v3/sync?timeout=2000&since="+url.QueryEscape(aliceSince), alice.Token, nil)
		aliceSince = r.Str("next_batch")
		var s struct {
			Rooms struct {
				Join map[string]struct {
					Ephemeral struct {
						Events []struct {
							Type    string          `json:"type"`
							Content json.RawMessage `json:"content"`
						} `json:"events"`
					} `json:"ephemeral"`
				} `json:"join"`
			} `json:"rooms"`
		}
		json.Unmarshal(r.Body, &s)
		for _, e := range s.Rooms.Join[roomID].Ephemeral.Events {
			switch e.Type {
			case "m.typing":
				sawTyping = sawTyping || contains(e.Content, bob.UserID)
			case "m.receipt":
				sawReceipt = sawReceipt || (contains(e.Content, bob.UserID) && contains(e.Content, msg))
			}
		}
	}
	if !sawTyping || !sawReceipt {
		t.Fatalf("alice saw typing %v, receipt %v", sawTyping, sawReceipt)
	}
}

// Knocking on a room of another server, and a restricted room joined from
// another server by a member of the room its rule allows.
func TestKnockAndRestrictedJoinAcrossServers(t *testing.T) {
	hs := hstest.StartFederation(t, 2)
	a, b := hs[0], hs[1]
	alice := a.Register(t, "alice")
	bob := b.Register(t, "bob")
	knockRoom := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "private_chat", "room_version": "10",
		"initial_state": []any{map[string]any{"type": "m.room.join_rules", "state_key": "", "content": map[string]any{"join_rule": "knock"}}}}).Str("room_id")
	r := b.Do(t, "POST", "/_matrix/client/v3/knock/"+url.PathEscape(knockRoom)+"?server_name="+url.QueryEscape(a.ServerName), bob.Token, map[string]any{"reason": "let me in"})
	if r.Status != 200 {
		t.Fatalf("knock: %d %s", r.Status, r.Body)
	}
	waitStateKey(t, a, alice, knockRoom, "m.room.member", bob.UserID, func(c json.RawMessage) bool { return contains(c, `"knock"`) })

	allowed := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	restricted := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "private_chat", "room_version": "10",
		"initial_state": []any{map[string]any{"type": "m.room.join_rules", "state_key": "", "content": map[string]any{"join_rule": "restricted",
			"allow": []any{map[string]any{"type": "m.room_membership", "room_id": allowed}}}}}}).Str("room_id")
	join := func(room string) *hstest.Response {
		return b.Do(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(room)+"?server_name="+url.QueryEscape(a.ServerName), bob.Token, map[string]any{})
	}
	if r := join(restricted); r.Status != 403 {
		t.Fatalf("restricted join before joining the allowed room: %d %s", r.Status, r.Body)
	}
	if r := join(allowed); r.Status != 200 {
		t.Fatalf("joining the allowed room: %d %s", r.Status, r.Body)
	}
	if r := join(restricted); r.Status != 200 {
		t.Fatalf("restricted join: %d %s", r.Status, r.Body)
	}
	// Bob's server is in the room: he can speak there.
	b.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/r1", restricted), bob.Token, map[string]any{"msgtype": "m.text", "body": "in"})
	newSyncer(t, a, alice)
}
