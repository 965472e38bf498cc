package room_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"conclave/internal/changes"
	"conclave/internal/room"
	"conclave/internal/store"
)

// The room service's memory of recent events (RecentEvents) answers exactly
// what the store answers, for random histories of messages, state events and
// redactions in several rooms and random query ranges; and it declines when
// it cannot know.
func TestRecentEventsMatchStore(t *testing.T) {
	ctx := context.Background()
	svc, db := newService(t)
	floor, err := db.MaxStreamPos(ctx)
	if err != nil {
		t.Fatal(err)
	}
	alice := "@alice:bench.example"
	before, err := svc.CreateRoom(ctx, &room.CreateRequest{Creator: alice, Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	floor, _ = db.MaxStreamPos(ctx)
	svc.TrackChanges(changes.New(func() int64 { p, _ := db.MaxStreamPos(ctx); return p }))
	rooms := []string{before}
	for range 2 {
		id, err := svc.CreateRoom(ctx, &room.CreateRequest{Creator: alice, Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		rooms = append(rooms, id)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	sent := map[string][]string{}
	for i := range 300 {
		r := rooms[rng.IntN(len(rooms))]
		req := &room.SendRequest{RoomID: r, Sender: alice, DeviceID: "D", TxnID: fmt.Sprint(i), Type: "m.room.message",
			Content: json.RawMessage(fmt.Sprintf(`{"msgtype":"m.text","body":"m%d"}`, i))}
		switch x := rng.IntN(10); {
		case x == 0 && len(sent[r]) > 0:
			req.Type, req.Content = "m.room.redaction", json.RawMessage(`{}`)
			req.Redacts = sent[r][rng.IntN(len(sent[r]))]
		case x == 1:
			key := ""
			req.Type, req.StateKey, req.Content = "m.room.topic", &key, json.RawMessage(fmt.Sprintf(`{"topic":"t%d"}`, i))
		}
		id, err := svc.Send(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		sent[r] = append(sent[r], id)
	}
	top, _ := db.MaxStreamPos(ctx)
	checked := 0
	for range 2000 {
		r := rooms[rng.IntN(len(rooms))]
		after := rng.Int64N(top + 2)
		upto := after + rng.Int64N(top+2-after)
		limit := 1 + rng.IntN(80)
		got, ok := svc.RecentEvents(r, after, upto, limit)
		if after < floor && ok {
			t.Fatalf("answered for a range starting before tracking (after %d, floor %d)", after, floor)
		}
		if !ok {
			continue
		}
		want, err := db.RoomEvents(ctx, store.RoomEventsQuery{RoomID: r, After: after, Before: upto + 1, Backwards: true, Limit: limit})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 && len(want) == 0 {
			checked++
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("room %s (%d, %d] limit %d:\nmemory %v\nstore  %v", r, after, upto, limit, ids(got), ids(want))
		}
		checked++
	}
	if checked < 500 {
		t.Fatalf("only %d of 2000 queries answered from memory", checked)
	}
	// A room written before tracking began is not answered for old ranges.
	if _, ok := svc.RecentEvents(before, 0, top, 10); ok {
		t.Fatal("answered from position 0")
	}
}

func ids(evs []store.StoredEvent) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = fmt.Sprintf("%d:%s:%s", e.Pos, e.Type, e.RedactedBy)
	}
	return out
}
