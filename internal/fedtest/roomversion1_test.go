package fedtest

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"conclave/internal/event"
	"conclave/internal/homeserver/hstest"
)

// A room of version 1 (the historical event format, state resolution v1)
// across servers: created by a client on one server, joined from another
// through make_join/send_join and by invite, messages both ways, and a fork
// both servers resolve with state resolution v1 to the same state.
//
// The fork is made deterministic by hand: bob names the room and changes
// the topic (two events both servers have), while carol's server, on a
// branch from before them, demotes bob; carol's event is sent to both
// servers by her server's client, so neither server holds a state without
// it. v1 then resolves: the power levels to carol's demotion (deeper, and
// allowed after the old ones); the topic, deeper on bob's branch but refused
// once bob is demoted, to alice's older one; and the room name, which only
// bob's branch holds, is no conflict in v1 and stays (state resolution v2
// would check it against the demotion and drop it).
func TestRoomVersion1AcrossServers(t *testing.T) {
	hs := hstest.StartFederation(t, 3)
	a, b, c := hs[0], hs[1], hs[2]
	alice := a.Register(t, "alice")
	bob := b.Register(t, "bob")
	dave := b.Register(t, "dave")
	carol := c.Register(t, "carol")
	ctx := context.Background()
	pl := func(bobLevel int) map[string]any {
		return map[string]any{"users": map[string]int{alice.UserID: 100, carol.UserID: 100, bob.UserID: bobLevel},
			"state_default": 50, "events_default": 0, "ban": 50, "kick": 50, "redact": 50, "invite": 0}
	}
	roomID := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat",
		"room_version": "1", "power_level_content_override": pl(50)}).Str("room_id")
	if !strings.HasSuffix(roomID, ":"+a.ServerName) {
		t.Fatalf("room ID %s", roomID)
	}
	var create struct {
		RoomVersion string `json:"room_version"`
		Creator     string `json:"creator"`
	}
	json.Unmarshal(a.MustOK(t, "GET", hstest.Path("/rooms/%s/state/m.room.create/", roomID), alice.Token, nil).Body, &create)
	if create.RoomVersion != "1" || create.Creator != alice.UserID {
		t.Fatalf("create content %+v", create)
	}
	for _, p := range []struct {
		s *hstest.Server
		u *hstest.User
	}{{b, bob}, {c, carol}} {
		p.s.MustOK(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName), p.u.Token, map[string]any{})
	}
	// An invite over federation to the version 1 room, taken up.
	a.MustOK(t, "POST", hstest.Path("/rooms/%s/invite", roomID), alice.Token, map[string]any{"user_id": dave.UserID})
	b.MustOK(t, "POST", hstest.Path("/rooms/%s/join", roomID), dave.Token, map[string]any{})

	bobSync := newSyncer(t, b, bob)
	aliceSync := newSyncer(t, a, alice)
	id := a.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/m1", roomID), alice.Token, map[string]any{"msgtype": "m.text", "body": "hello bob"}).Str("event_id")
	if !strings.HasSuffix(id, ":"+a.ServerName) {
		t.Fatalf("a room version 1 event ID %s", id)
	}
	bobSync.waitFor(t, roomID, body("hello bob"))
	b.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/m2", roomID), bob.Token, map[string]any{"msgtype": "m.text", "body": "hello alice"})
	aliceSync.waitFor(t, roomID, body("hello alice"))

	// The fork point: alice's topic, once both servers have it.
	topic1 := a.MustOK(t, "PUT", hstest.Path("/rooms/%s/state/m.room.topic/", roomID), alice.Token, map[string]any{"topic": "one"}).Str("event_id")
	waitState(t, b, bob, roomID, "m.room.topic", func(c json.RawMessage) bool { return contains(c, `"one"`) })
	st := stateIDs(t, a, alice, roomID) // the state after topic one
	// Bob's branch: the room's name, then a new topic; both servers have them.
	name := b.MustOK(t, "PUT", hstest.Path("/rooms/%s/state/m.room.name/", roomID), bob.Token, map[string]any{"name": "bob's room"}).Str("event_id")
	b.MustOK(t, "PUT", hstest.Path("/rooms/%s/state/m.room.topic/", roomID), bob.Token, map[string]any{"topic": "two"})
	waitState(t, a, alice, roomID, "m.room.topic", func(c json.RawMessage) bool { return contains(c, `"two"`) })

	// Carol's branch, from topic one: bob demoted, sent by her server to both.
	tx, err := c.HS.FedClient.GetEvent(ctx, a.ServerName, topic1)
	if err != nil {
		t.Fatal(err)
	}
	var head struct {
		Depth int64 `json:"depth"`
	}
	json.Unmarshal(tx.PDUs[0], &head)
	rv, _ := event.GetRoomVersion("1")
	content, _ := json.Marshal(pl(0))
	empty := ""
	demote, err := (&event.Proto{Type: "m.room.power_levels", StateKey: &empty, Sender: carol.UserID, RoomID: roomID, Content: content,
		PrevEvents: []string{topic1}, AuthEvents: []string{st["m.room.create|"], st["m.room.power_levels|"], st["m.room.member|"+carol.UserID]},
		Depth: head.Depth + 1, OriginServerTS: time.Now().UnixMilli()}).Build(rv, c.ServerName, c.HS.SigningKey)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(demote.EventID, ":"+c.ServerName) {
		t.Fatalf("demotion event ID %s", demote.EventID)
	}
	for _, s := range []*hstest.Server{a, b} {
		txn, _ := json.Marshal(map[string]any{"origin": c.ServerName, "origin_server_ts": time.Now().UnixMilli(), "pdus": []json.RawMessage{demote.Raw}})
		raw, err := c.HS.FedClient.SendTransaction(ctx, s.ServerName, "fork-"+s.ServerName, txn)
		if err != nil {
			t.Fatal(err)
		}
		var answer struct {
			PDUs map[string]map[string]string `json:"pdus"`
		}
		json.Unmarshal(raw, &answer)
		if e := answer.PDUs[demote.EventID]["error"]; e != "" {
			t.Fatalf("%s refused the demotion: %s", s.ServerName, e)
		}
	}

	// Both servers resolve the fork the same way, as v1 does.
	stA, stB := stateIDs(t, a, alice, roomID), stateIDs(t, b, bob, roomID)
	for _, x := range []struct {
		server string
		st     map[string]string
	}{{a.ServerName, stA}, {b.ServerName, stB}} {
		if x.st["m.room.power_levels|"] != demote.EventID || x.st["m.room.topic|"] != topic1 || x.st["m.room.name|"] != name {
			t.Errorf("%s resolved power levels %s (want %s), topic %s (want %s), name %s (want %s)", x.server,
				x.st["m.room.power_levels|"], demote.EventID, x.st["m.room.topic|"], topic1, x.st["m.room.name|"], name)
		}
	}
	if len(stA) != len(stB) {
		t.Errorf("the servers' states differ: %v and %v", stA, stB)
	}
	for k, v := range stA {
		if stB[k] != v {
			t.Errorf("%s: %s on %s, %s on %s", k, v, a.ServerName, stB[k], b.ServerName)
		}
	}

	// Messages still go both ways after the merge; bob, demoted, still speaks
	// (events_default 0) but can no longer set the topic.
	a.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/m3", roomID), alice.Token, map[string]any{"msgtype": "m.text", "body": "after the fork"})
	bobSync.waitFor(t, roomID, body("after the fork"))
	b.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/m4", roomID), bob.Token, map[string]any{"msgtype": "m.text", "body": "still here"})
	aliceSync.waitFor(t, roomID, body("still here"))
	if r := b.Do(t, "PUT", hstest.Path("/rooms/%s/state/m.room.topic/", roomID), bob.Token, map[string]any{"topic": "three"}); r.Status != 403 {
		t.Fatalf("demoted bob set the topic: %d %s", r.Status, r.Body)
	}
}
