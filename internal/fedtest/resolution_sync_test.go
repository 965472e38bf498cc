package fedtest

import (
	"context"
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"conclave/internal/event"
	"conclave/internal/homeserver/hstest"
)

// A state change made by state resolution alone reaches /sync. Carol sets
// the topic; concurrently (a fork from before her topic) bob's server demotes
// her. Alice's server resolves the fork: the demotion wins, carol's topic no
// longer passes auth, and the topic is the older one again — an event at an
// old position, which no timeline carries. Alice's incremental /sync must
// give it in the room's state.
func TestSyncReportsStateChangedByResolution(t *testing.T) {
	hs := hstest.StartFederation(t, 2)
	a, b := hs[0], hs[1]
	alice := a.Register(t, "alice")
	carol := a.Register(t, "carol")
	bob := b.Register(t, "bob")
	ctx := context.Background()
	pl := func(carolLevel int) map[string]any {
		return map[string]any{"users": map[string]int{alice.UserID: 100, bob.UserID: 100, carol.UserID: carolLevel},
			"state_default": 50, "events_default": 0, "ban": 50, "kick": 50, "redact": 50, "invite": 0}
	}
	roomID := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat", "power_level_content_override": pl(50)}).Str("room_id")
	b.MustOK(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName), bob.Token, map[string]any{})
	a.MustOK(t, "POST", hstest.Path("/rooms/%s/join", roomID), carol.Token, map[string]any{})
	topic1 := a.MustOK(t, "PUT", hstest.Path("/rooms/%s/state/m.room.topic/", roomID), alice.Token, map[string]any{"topic": "one"}).Str("event_id")
	st := stateIDs(t, a, alice, roomID) // the state after topic one
	a.MustOK(t, "PUT", hstest.Path("/rooms/%s/state/m.room.topic/", roomID), carol.Token, map[string]any{"topic": "two"})
	y := newSyncer(t, a, alice)

	// Bob's server, on the branch ending at topic one, demotes carol.
	tx, err := b.HS.FedClient.GetEvent(ctx, a.ServerName, topic1)
	if err != nil {
		t.Fatal(err)
	}
	var head struct {
		Depth int64 `json:"depth"`
	}
	json.Unmarshal(tx.PDUs[0], &head)
	var create struct {
		RoomVersion string `json:"room_version"`
	}
	json.Unmarshal(a.MustOK(t, "GET", hstest.Path("/rooms/%s/state/m.room.create/", roomID), alice.Token, nil).Body, &create)
	rv, ok := event.GetRoomVersion(create.RoomVersion)
	if !ok {
		t.Fatalf("room version %q", create.RoomVersion)
	}
	content, _ := json.Marshal(pl(0))
	empty := ""
	demote, err := (&event.Proto{Type: "m.room.power_levels", StateKey: &empty, Sender: bob.UserID, RoomID: roomID, Content: content,
		PrevEvents: []string{topic1}, AuthEvents: []string{st["m.room.create|"], st["m.room.power_levels|"], st["m.room.member|"+bob.UserID]},
		Depth: head.Depth + 1, OriginServerTS: time.Now().UnixMilli()}).Build(rv, b.ServerName, b.HS.SigningKey)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"origin": b.ServerName, "origin_server_ts": time.Now().UnixMilli(), "pdus": []json.RawMessage{demote.Raw}})
	if _, err := b.HS.FedClient.SendTransaction(ctx, a.ServerName, "fork", body); err != nil {
		t.Fatal(err)
	}
	// The resolution as alice's server made it.
	if got := stateIDs(t, a, alice, roomID); got["m.room.topic|"] != topic1 || got["m.room.power_levels|"] != demote.EventID {
		t.Fatalf("after the fork: topic %s (want %s), power levels %s (want %s)", got["m.room.topic|"], topic1, got["m.room.power_levels|"], demote.EventID)
	}

	res := y.sync(t, 0)
	jr := res.Rooms.Join[roomID]
	topic := ""
	for _, e := range jr.State.Events {
		if e.Type == "m.room.topic" {
			var c struct {
				Topic string `json:"topic"`
			}
			json.Unmarshal(e.Content, &c)
			topic = c.Topic
		}
	}
	if topic != "one" {
		t.Fatalf("incremental /sync's state has topic %q, want the resolved %q: state %+v, timeline %+v", topic, "one", jr.State.Events, jr.Timeline.Events)
	}
}
