package room_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"

	"conclave/internal/event"
	"conclave/internal/room"
	"conclave/internal/store"
	"conclave/internal/store/sqlite"
	"conclave/internal/syncer"
)

func newService(tb testing.TB) (*room.Service, *sqlite.DB) {
	tb.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(tb.TempDir(), "bench.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	key, err := event.GenerateSigningKey()
	if err != nil {
		tb.Fatal(err)
	}
	return room.New(db, "bench.example", key), db
}

// BenchmarkSendMessage measures the whole write path of one message: txn
// check, PDU build + hash + sign, auth check, and a durable SQLite commit.
func BenchmarkSendMessage(b *testing.B) {
	ctx := context.Background()
	svc, _ := newService(b)
	roomID, err := svc.CreateRoom(ctx, &room.CreateRequest{Creator: "@alice:bench.example", Preset: "public_chat"})
	if err != nil {
		b.Fatal(err)
	}
	content := json.RawMessage(`{"msgtype":"m.text","body":"The quick brown fox jumps over the lazy dog"}`)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, err := svc.Send(ctx, &room.SendRequest{RoomID: roomID, Sender: "@alice:bench.example", DeviceID: "DEV", TxnID: strconv.Itoa(i), Type: "m.room.message", Content: content})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIncrementalSync measures assembling an incremental /sync for a
// user in 20 rooms where one message arrived in one room.
func BenchmarkIncrementalSync(b *testing.B) {
	ctx := context.Background()
	svc, db := newService(b)
	user := "@bob:bench.example"
	var rooms []string
	for i := 0; i < 20; i++ {
		id, err := svc.CreateRoom(ctx, &room.CreateRequest{Creator: user, Preset: "public_chat"})
		if err != nil {
			b.Fatal(err)
		}
		rooms = append(rooms, id)
	}
	ss := syncer.New(db, svc, syncer.NewNotifier(), syncer.Sources{})
	content := json.RawMessage(`{"msgtype":"m.text","body":"hello"}`)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		pos, _ := db.MaxStreamPos(ctx)
		if _, err := svc.Send(ctx, &room.SendRequest{RoomID: rooms[i%len(rooms)], Sender: user, DeviceID: "D", TxnID: strconv.Itoa(i), Type: "m.room.message", Content: content}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		resp, err := ss.Sync(ctx, &syncer.Request{UserID: user, DeviceID: "D", Since: &syncer.Token{Pos: pos}})
		if err != nil {
			b.Fatal(err)
		}
		if len(resp.Rooms.Join) != 1 {
			b.Fatalf("rooms in sync: %d", len(resp.Rooms.Join))
		}
	}
}

var _ store.Store = (*sqlite.DB)(nil)

// BenchmarkSendMessageParallelRooms sends from many goroutines, each into
// its own room: concurrent writers share commits (group commit).
func BenchmarkSendMessageParallelRooms(b *testing.B) {
	ctx := context.Background()
	svc, _ := newService(b)
	const rooms = 32
	ids := make(chan string, rooms)
	for i := 0; i < rooms; i++ {
		id, err := svc.CreateRoom(ctx, &room.CreateRequest{Creator: "@alice:bench.example", Preset: "public_chat"})
		if err != nil {
			b.Fatal(err)
		}
		ids <- id
	}
	content := json.RawMessage(`{"msgtype":"m.text","body":"The quick brown fox jumps over the lazy dog"}`)
	var n atomic.Int64
	b.SetParallelism(16) // 32 senders on 2 cores
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		roomID := <-ids
		for pb.Next() {
			txn := strconv.FormatInt(n.Add(1), 10)
			if _, err := svc.Send(ctx, &room.SendRequest{RoomID: roomID, Sender: "@alice:bench.example", DeviceID: "DEV", TxnID: txn, Type: "m.room.message", Content: content}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
