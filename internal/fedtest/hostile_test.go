package fedtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"conclave/internal/event"
	"conclave/internal/fedclient"
	"conclave/internal/homeserver/hstest"
)

// Transactions a misbehaving server may send: each bad PDU gets its own
// error, nothing is stored for it, and the good ones still go in.
func TestHostileTransactions(t *testing.T) {
	hs := hstest.StartFederation(t, 3)
	a, b := hs[0], hs[1]
	alice := a.Register(t, "alice")
	bob := b.Register(t, "bob")
	roomID := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	b.MustOK(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName), bob.Token, map[string]any{})
	ctx := context.Background()
	rv, _ := event.GetRoomVersion("10")

	// Bob's server builds events by hand on the room's current head, as a
	// server that does what it likes would.
	stateOf := func() map[string]string {
		r := a.MustOK(t, "GET", hstest.Path("/rooms/%s/state", roomID), alice.Token, nil)
		var evs []struct {
			Type     string `json:"type"`
			StateKey string `json:"state_key"`
			EventID  string `json:"event_id"`
		}
		json.Unmarshal(r.Body, &evs)
		m := map[string]string{}
		for _, e := range evs {
			m[e.Type+"|"+e.StateKey] = e.EventID
		}
		return m
	}
	st := stateOf()
	head := a.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/h", roomID), alice.Token, map[string]any{"body": "head"}).Str("event_id")
	depth := int64(100)
	build := func(sender, body string) *event.PDU {
		// Signed by bob's server's key, under the sender's server's name.
		origin := sender[strings.Index(sender, ":")+1:]
		depth++
		c, _ := json.Marshal(map[string]string{"msgtype": "m.text", "body": body})
		auth := []string{st["m.room.create|"], st["m.room.power_levels|"]}
		if m, ok := st["m.room.member|"+sender]; ok {
			auth = append(auth, m)
		}
		pdu, err := (&event.Proto{Type: "m.room.message", Sender: sender, RoomID: roomID, Content: c, PrevEvents: []string{head},
			AuthEvents: auth, Depth: depth, OriginServerTS: time.Now().UnixMilli() + depth}).Build(rv, origin, b.HS.SigningKey)
		if err != nil {
			t.Fatal(err)
		}
		return pdu
	}
	send := func(txn string, pdus ...json.RawMessage) (map[string]map[string]string, error) {
		body, _ := json.Marshal(map[string]any{"origin": b.ServerName, "origin_server_ts": 1, "pdus": pdus})
		raw, err := b.HS.FedClient.SendTransaction(ctx, a.ServerName, txn, body)
		if err != nil {
			return nil, err
		}
		var out struct {
			PDUs map[string]map[string]string `json:"pdus"`
		}
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatal(err)
		}
		return out.PDUs, nil
	}

	good := build(bob.UserID, "fine")
	// An event in a third server's name, signed by bob's server only.
	forged := build("@mallory:"+hs[2].ServerName, "forged")
	// An event whose content was changed after signing: redacted on receipt.
	tampered := build(bob.UserID, "original")
	raw := strings.Replace(string(tampered.Raw), `"original"`, `"changed!"`, 1)
	// An event of a room bob's server does not share with alice's.
	other := strings.Replace(string(good.Raw), roomID, "!elsewhere:"+b.ServerName, 1)
	res, err := send("t1", good.Raw, forged.Raw, json.RawMessage(raw), json.RawMessage(other), json.RawMessage(`{"not":"an event"}`))
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := res[good.EventID]; !ok || r["error"] != "" {
		t.Errorf("good event: %v", res)
	}
	if r := res[forged.EventID]; r["error"] == "" {
		t.Errorf("forged event accepted: %v", res)
	}
	if len(res) != 3 {
		t.Errorf("answered for %d PDUs, want 3 (the good, the forged, the tampered): %v", len(res), res)
	}
	// The tampered event was taken redacted: no body.
	ev := a.Do(t, "GET", hstest.Path("/rooms/%s/event/%s", roomID, tampered.EventID), alice.Token, nil)
	if ev.Status != 200 || strings.Contains(string(ev.Body), "changed!") || strings.Contains(string(ev.Body), "original") {
		t.Errorf("tampered content shown: %s", ev.Body)
	}
	if r := a.Do(t, "GET", hstest.Path("/rooms/%s/event/%s", roomID, forged.EventID), alice.Token, nil); r.Status != 404 {
		t.Errorf("forged event readable: %d %s", r.Status, r.Body)
	}
	// The same transaction again: the same answer.
	again, err := send("t1")
	if err != nil || fmt.Sprint(again) != fmt.Sprint(res) {
		t.Errorf("replayed transaction answered %v (%v), first %v", again, err, res)
	}
	// Too many PDUs: the whole transaction is refused.
	var many []json.RawMessage
	for i := 0; i < 51; i++ {
		many = append(many, good.Raw)
	}
	_, err = send("t2", many...)
	var fe *fedclient.Error
	if !errorsAs(err, &fe) || fe.Status != 400 {
		t.Errorf("51 PDUs: %v", err)
	}
}

func errorsAs(err error, target **fedclient.Error) bool {
	if err == nil {
		return false
	}
	e, ok := err.(*fedclient.Error)
	if !ok {
		return false
	}
	*target = e
	return true
}
