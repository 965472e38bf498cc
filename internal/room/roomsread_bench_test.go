package room_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"

	"conclave/internal/room"
	"conclave/internal/store"
)

// BenchmarkClientEventsAggregations measures formatting a 50-event page
// (/messages) with and without bundled aggregations, in a room where some
// events have threads, edits and references.
func BenchmarkClientEventsAggregations(b *testing.B) {
	ctx := context.Background()
	svc, db := newService(b)
	user := "@alice:bench.example"
	roomID, err := svc.CreateRoom(ctx, &room.CreateRequest{Creator: user, Preset: "public_chat"})
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	sendMsg := func(content string) string {
		n++
		id, err := svc.Send(ctx, &room.SendRequest{RoomID: roomID, Sender: user, DeviceID: "D", TxnID: strconv.Itoa(n), Type: "m.room.message", Content: json.RawMessage(content)})
		if err != nil {
			b.Fatal(err)
		}
		return id
	}
	for i := 0; i < 40; i++ {
		root := sendMsg(`{"msgtype":"m.text","body":"root"}`)
		if i%4 == 0 {
			for j := 0; j < 3; j++ {
				sendMsg(fmt.Sprintf(`{"msgtype":"m.text","body":"reply","m.relates_to":{"rel_type":"m.thread","event_id":%q}}`, root))
			}
			sendMsg(fmt.Sprintf(`{"msgtype":"m.text","body":"* edit","m.new_content":{"msgtype":"m.text","body":"edit"},"m.relates_to":{"rel_type":"m.replace","event_id":%q}}`, root))
			sendMsg(fmt.Sprintf(`{"msgtype":"m.text","body":"ref","m.relates_to":{"rel_type":"m.reference","event_id":%q}}`, root))
		}
	}
	rows, err := db.RoomEvents(ctx, store.RoomEventsQuery{RoomID: roomID, Backwards: true, Limit: 50})
	if err != nil || len(rows) != 50 {
		b.Fatalf("page: %d %v", len(rows), err)
	}
	for _, skip := range []bool{true, false} {
		name := "with"
		if skip {
			name = "without"
		}
		b.Run(name, func(b *testing.B) {
			svc.SkipAggregations = skip
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := svc.ClientEvents(ctx, rows, user, "D", true); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	// A page of 50 events without relations pays only the index probe.
	for i := 0; i < 50; i++ {
		sendMsg(`{"msgtype":"m.text","body":"plain"}`)
	}
	plain, err := db.RoomEvents(ctx, store.RoomEventsQuery{RoomID: roomID, Backwards: true, Limit: 50})
	if err != nil {
		b.Fatal(err)
	}
	for _, skip := range []bool{true, false} {
		name := "plain-with"
		if skip {
			name = "plain-without"
		}
		b.Run(name, func(b *testing.B) {
			svc.SkipAggregations = skip
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := svc.ClientEvents(ctx, plain, user, "D", true); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
