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

// A room of version 2 (the event format of version 1: event IDs
// "$opaque:server" inside the signed event, prev and auth events as pairs)
// across servers: the join through make_join/send_join, messages and a
// state change both ways, a redaction; and an event whose ID names another
// server than the one that signed it is refused.
func TestRoomVersion2AcrossServers(t *testing.T) {
	hs := hstest.StartFederation(t, 2)
	a, b := hs[0], hs[1]
	alice := a.Register(t, "alice")
	bob := b.Register(t, "bob")
	roomID := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat", "room_version": "2"}).Str("room_id")
	b.MustOK(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName), bob.Token, map[string]any{})
	bobSync := newSyncer(t, b, bob)
	aliceSync := newSyncer(t, a, alice)

	id := a.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/m1", roomID), alice.Token, map[string]any{"msgtype": "m.text", "body": "hello bob"}).Str("event_id")
	if !strings.HasSuffix(id, ":"+a.ServerName) {
		t.Fatalf("a room version 2 event ID %s", id)
	}
	bobSync.waitFor(t, roomID, body("hello bob"))
	b.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/m2", roomID), bob.Token, map[string]any{"msgtype": "m.text", "body": "hello alice"})
	aliceSync.waitFor(t, roomID, body("hello alice"))
	b.MustOK(t, "PUT", hstest.Path("/rooms/%s/state/m.room.member/%s", roomID, bob.UserID), bob.Token, map[string]any{"membership": "join", "displayname": "Bob Two"})
	waitStateKey(t, a, alice, roomID, "m.room.member", bob.UserID, func(c json.RawMessage) bool { return strings.Contains(string(c), "Bob Two") })
	a.MustOK(t, "PUT", hstest.Path("/rooms/%s/redact/%s/r1", roomID, id), alice.Token, map[string]any{})
	bobSync.waitFor(t, roomID, func(typ, _ string, _ json.RawMessage) bool { return typ == "m.room.redaction" })

	// Bob's server mints an event ID in alice's server's name.
	var evs []struct {
		Type     string `json:"type"`
		StateKey string `json:"state_key"`
		EventID  string `json:"event_id"`
	}
	json.Unmarshal(a.MustOK(t, "GET", hstest.Path("/rooms/%s/state", roomID), alice.Token, nil).Body, &evs)
	st := map[string]string{}
	for _, e := range evs {
		st[e.Type+"|"+e.StateKey] = e.EventID
	}
	head := a.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/h", roomID), alice.Token, map[string]any{"body": "head"}).Str("event_id")
	rv, _ := event.GetRoomVersion("2")
	forged, err := (&event.Proto{Type: "m.room.message", Sender: bob.UserID, RoomID: roomID, Content: json.RawMessage(`{"body":"forged"}`),
		PrevEvents: []string{head}, AuthEvents: []string{st["m.room.create|"], st["m.room.power_levels|"], st["m.room.member|"+bob.UserID]},
		Depth: 100, OriginServerTS: time.Now().UnixMilli(), EventID: "$forged:" + a.ServerName}).Build(rv, b.ServerName, b.HS.SigningKey)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"origin": b.ServerName, "origin_server_ts": 1, "pdus": []json.RawMessage{forged.Raw}})
	raw, err := b.HS.FedClient.SendTransaction(context.Background(), a.ServerName, "forged", body)
	if err != nil {
		t.Fatal(err)
	}
	var answer struct {
		PDUs map[string]map[string]string `json:"pdus"`
	}
	json.Unmarshal(raw, &answer)
	if answer.PDUs[forged.EventID]["error"] == "" {
		t.Fatalf("an event ID in another server's name was taken: %s", raw)
	}
}
