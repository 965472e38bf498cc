package fedtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"conclave/internal/event"
	"conclave/internal/homeserver/hstest"
)

// BenchmarkInboundSend measures inbound /send: transactions of 50 PDUs
// (messages of one user, a chain, as a busy room sends them), each PDU's
// signature checked, authorised and persisted. Reported as PDUs/s.
//
//	go test -run XXX -bench InboundSend -benchtime 40x ./internal/fedtest/
func BenchmarkInboundSend(b *testing.B) {
	hs := hstest.StartFederation(b, 2)
	a, s := hs[0], hs[1]
	alice := a.Register(b, "alice")
	bob := s.Register(b, "bob")
	roomID := a.MustOK(b, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	s.MustOK(b, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName), bob.Token, map[string]any{})
	ctx := context.Background()
	rv, _ := event.GetRoomVersion("10")
	st := map[string]string{}
	var evs []struct {
		Type     string `json:"type"`
		StateKey string `json:"state_key"`
		EventID  string `json:"event_id"`
	}
	json.Unmarshal(a.MustOK(b, "GET", hstest.Path("/rooms/%s/state", roomID), alice.Token, nil).Body, &evs)
	for _, e := range evs {
		st[e.Type+"|"+e.StateKey] = e.EventID
	}
	head := a.MustOK(b, "PUT", hstest.Path("/rooms/%s/send/m.room.message/h", roomID), alice.Token, map[string]any{"body": "head"}).Str("event_id")
	auth := []string{st["m.room.create|"], st["m.room.power_levels|"], st["m.room.member|"+bob.UserID]}
	depth := int64(1000)
	// Build every transaction first: the benchmark times the receiver.
	txns := make([][]byte, b.N)
	for i := range txns {
		pdus := make([]json.RawMessage, 50)
		for j := range pdus {
			depth++
			c, _ := json.Marshal(map[string]any{"msgtype": "m.text", "body": fmt.Sprint("load ", i, " ", j)})
			pdu, err := (&event.Proto{Type: "m.room.message", Sender: bob.UserID, RoomID: roomID, Content: c, PrevEvents: []string{head},
				AuthEvents: auth, Depth: depth, OriginServerTS: time.Now().UnixMilli()}).Build(rv, s.ServerName, s.HS.SigningKey)
			if err != nil {
				b.Fatal(err)
			}
			head = pdu.EventID
			pdus[j] = pdu.Raw
		}
		txns[i], _ = json.Marshal(map[string]any{"origin": s.ServerName, "origin_server_ts": 1, "pdus": pdus})
	}
	b.ResetTimer()
	start := time.Now()
	for i := range txns {
		raw, err := s.HS.FedClient.SendTransaction(ctx, a.ServerName, fmt.Sprint("bench", i), txns[i])
		if err != nil {
			b.Fatal(err)
		}
		if json.Valid(raw) && contains(raw, `"error"`) {
			b.Fatalf("a PDU was refused: %s", raw)
		}
	}
	b.ReportMetric(float64(50*b.N)/time.Since(start).Seconds(), "PDUs/s")
}

// BenchmarkSendFederated measures a local send (PUT /send) in a room with
// members on 3 other servers, sequential and by 8 senders at once: the
// event is written with its queue entries for those servers in one
// transaction (store.NewEvent.Fed). Reported per message.
//
//	go test -run XXX -bench SendFederated -benchtime 500x ./internal/fedtest/
func BenchmarkSendFederated(b *testing.B) {
	hs := hstest.StartFederation(b, 4)
	a := hs[0]
	alice := a.Register(b, "alice")
	roomID := a.MustOK(b, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	for i, s := range hs[1:] {
		u := s.Register(b, fmt.Sprint("bob", i))
		s.MustOK(b, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName), u.Token, map[string]any{})
	}
	for _, par := range []int{1, 8} {
		b.Run(fmt.Sprint("senders=", par), func(b *testing.B) {
			var n atomic.Int64
			b.SetParallelism(max(par/runtime.GOMAXPROCS(0), 1))
			b.ResetTimer()
			if par == 1 {
				for i := 0; i < b.N; i++ {
					a.MustOK(b, "PUT", hstest.Path("/rooms/%s/send/m.room.message/%s", roomID, fmt.Sprint(par, "-", n.Add(1))), alice.Token, map[string]any{"body": "x"})
				}
				return
			}
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					a.MustOK(b, "PUT", hstest.Path("/rooms/%s/send/m.room.message/%s", roomID, fmt.Sprint(par, "-", n.Add(1))), alice.Token, map[string]any{"body": "x"})
				}
			})
		})
	}
}
