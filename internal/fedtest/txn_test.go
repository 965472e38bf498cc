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

// A transaction sent again after the receiver restarted gets the answer it
// got the first time, and nothing in it is processed again: here the
// "retry" carries another event under the same ID, which is not taken.
func TestTransactionRetryAfterRestartNotReprocessed(t *testing.T) {
	hs := hstest.StartFederation(t, 2)
	a, b := hs[0], hs[1]
	alice := a.Register(t, "alice")
	bob := b.Register(t, "bob")
	roomID := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	b.MustOK(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName), bob.Token, map[string]any{})
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
	build := func(body string, depth int64) *event.PDU {
		c, _ := json.Marshal(map[string]any{"msgtype": "m.text", "body": body})
		pdu, err := (&event.Proto{Type: "m.room.message", Sender: bob.UserID, RoomID: roomID, Content: c, PrevEvents: []string{head},
			AuthEvents: []string{st["m.room.create|"], st["m.room.power_levels|"], st["m.room.member|"+bob.UserID]},
			Depth:      depth, OriginServerTS: time.Now().UnixMilli()}).Build(rv, b.ServerName, b.HS.SigningKey)
		if err != nil {
			t.Fatal(err)
		}
		return pdu
	}
	send := func(pdu *event.PDU) string {
		body, _ := json.Marshal(map[string]any{"origin": b.ServerName, "origin_server_ts": 1, "pdus": []json.RawMessage{pdu.Raw}})
		raw, err := b.HS.FedClient.SendTransaction(context.Background(), a.ServerName, "once", body)
		if err != nil {
			t.Fatal(err)
		}
		return string(raw)
	}
	first := build("first", 100)
	answer := send(first)
	if !contains([]byte(answer), first.EventID) {
		t.Fatalf("answer %s", answer)
	}
	a = a.Restart(t)
	second := build("second", 101)
	if again := send(second); again != answer {
		t.Fatalf("the retry after a restart was answered %s, first %s", again, answer)
	}
	r := a.MustOK(t, "GET", hstest.Path("/rooms/%s/messages", roomID)+"?dir=b&limit=10", alice.Token, nil)
	if !contains(r.Body, `"first"`) || contains(r.Body, `"second"`) {
		t.Fatalf("alice's server's timeline: %s", r.Body)
	}
}
