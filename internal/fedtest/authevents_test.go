package fedtest

import (
	"context"
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"conclave/internal/event"
	"conclave/internal/homeserver/hstest"
	"conclave/internal/store"
)

// Complement's TestInboundFederationRejectsEventsWithRejectedAuthEvents
// between two servers: an event whose auth events include one this server
// lacks has it fetched (/event, no /get_missing_events: nothing is missing
// before it); that auth event cites a rejected event, so it fails its
// checks and is not kept, and the event citing it is rejected; an event
// built on the rejected one is taken with the state before it.
func TestEventsWithRejectedAuthEventsRejected(t *testing.T) {
	hs := hstest.StartFederation(t, 2)
	a, b := hs[0], hs[1]
	alice := a.Register(t, "alice")
	charlie := b.Register(t, "charlie")
	roomID := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	b.MustOK(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName), charlie.Token, map[string]any{})
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
	rv, _ := event.GetRoomVersion("10")
	ctx := context.Background()
	depth := int64(100)
	build := func(typ string, stateKey *string, content string, prev, auth []string) *event.PDU {
		depth++
		pdu, err := (&event.Proto{Type: typ, StateKey: stateKey, Sender: charlie.UserID, RoomID: roomID, Content: json.RawMessage(content),
			PrevEvents: prev, AuthEvents: auth, Depth: depth, OriginServerTS: time.Now().UnixMilli()}).Build(rv, b.ServerName, b.HS.SigningKey)
		if err != nil {
			t.Fatal(err)
		}
		return pdu
	}
	send := func(txn string, pdus ...*event.PDU) string {
		var raws []json.RawMessage
		for _, p := range pdus {
			raws = append(raws, p.Raw)
		}
		body, _ := json.Marshal(map[string]any{"origin": b.ServerName, "origin_server_ts": 1, "pdus": raws})
		raw, err := b.HS.FedClient.SendTransaction(ctx, a.ServerName, txn, body)
		if err != nil {
			t.Fatal(err)
		}
		return string(raw)
	}
	base := []string{st["m.room.create|"], st["m.room.power_levels|"], st["m.room.member|"+charlie.UserID]}
	empty := ""
	rejected := build("m.room.power_levels", &empty, `{"users":{}}`, []string{head}, base)
	send("r", rejected)
	// An event citing the rejected one among its auth events, which only
	// charlie's server has (as an outlier), and one citing it in turn.
	self := charlie.UserID
	outlier := build("m.room.member", &self, `{"membership":"join","test":1}`, []string{head},
		[]string{st["m.room.create|"], st["m.room.join_rules|"], rejected.EventID, st["m.room.member|"+charlie.UserID]})
	if err := b.HS.Store.PersistOutliers(ctx, []store.NewEvent{{EventID: outlier.EventID, RoomID: roomID, Type: outlier.Type, StateKey: outlier.StateKey,
		Sender: outlier.Sender, Depth: outlier.Depth, OriginServerTS: outlier.OriginServerTS, JSON: outlier.Raw, Membership: "join"}}); err != nil {
		t.Fatal(err)
	}
	sent := build("m.room.message", nil, `{"body":"sent"}`, []string{head}, append(base, outlier.EventID))
	sentinel := build("m.room.message", nil, `{"body":"sentinel"}`, []string{sent.EventID}, base)
	if answer := send("s", sent, sentinel); contains([]byte(answer), `"error"`) {
		t.Fatalf("answer %s", answer)
	}
	waitBody(t, a, alice, roomID, "sentinel")
	for name, id := range map[string]string{"the outlier": outlier.EventID, "the event citing it": sent.EventID, "the rejected event": rejected.EventID} {
		if r := a.Do(t, "GET", hstest.Path("/rooms/%s/event/%s", roomID, id), alice.Token, nil); r.Status != 404 {
			t.Errorf("%s: %d %s", name, r.Status, r.Body)
		}
	}
}
