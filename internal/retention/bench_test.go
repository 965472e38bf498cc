package retention_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"conclave/internal/event"
	"conclave/internal/retention"
	"conclave/internal/store"
	"conclave/internal/store/postgres"
	"conclave/internal/store/sqlite"
	"conclave/internal/store/storetest/pgtest"
)

type v10Rooms struct{}

func (v10Rooms) RoomVersion(context.Context, string) (*event.RoomVersion, error) {
	rv, _ := event.GetRoomVersion("10")
	return rv, nil
}
func (v10Rooms) ForgetPurged(string, []string) {}

// BenchmarkPurge100k purges a room of 100,000 expired messages (each with
// a notification for one user) on each backend: the whole job (read,
// redact, rewrite, search and notification rows), then a second run that
// finds nothing (what every later run costs the room).
//
//	go test -run '^$' -bench Purge100k -benchtime 1x ./internal/retention
func BenchmarkPurge100k(b *testing.B) {
	const n = 100_000
	open := map[string]func(b *testing.B) store.Store{
		"sqlite": func(b *testing.B) store.Store {
			db, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "conclave.db"))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { db.Close() })
			return db
		},
		"postgres": func(b *testing.B) store.Store {
			db, err := postgres.Open(context.Background(), pgtest.NewDatabase(b))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { db.Close() })
			return db
		},
	}
	for _, name := range []string{"sqlite", "postgres"} {
		b.Run(name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				s := open[name](b)
				fill(b, s, "!big:x", n)
				svc := retention.New(s, v10Rooms{}, retention.Config{}, slog.Default())
				b.StartTimer()
				start := time.Now()
				got, err := svc.PurgeRoom(context.Background(), "!big:x", time.UnixMilli(10_000_000))
				if err != nil || got != n-1 {
					b.Fatalf("purged %d (want %d): %v", got, n-1, err)
				}
				took := time.Since(start)
				if ns, err := s.NotificationsOf(context.Background(), "@b:x", 0, 10, false); err != nil || len(ns) != 1 {
					b.Fatalf("notifications left: %d %v", len(ns), err)
				}
				again := time.Now()
				if got, err := svc.PurgeRoom(context.Background(), "!big:x", time.UnixMilli(10_000_000)); err != nil || got != 0 {
					b.Fatalf("second run purged %d: %v", got, err)
				}
				b.ReportMetric(float64(n)/took.Seconds(), "events/s")
				b.ReportMetric(float64(time.Since(again).Milliseconds()), "rescan-ms")
			}
		})
	}
}

// fill writes a room of n messages (one linear chain, old timestamps).
func fill(b *testing.B, s store.Store, roomID string, n int) {
	ctx := context.Background()
	sk := ""
	pdu := func(typ, id string, depth int64, prev string, content string) store.NewEvent {
		js := fmt.Sprintf(`{"type":%q,"room_id":%q,"sender":"@a:x","depth":%d,"origin_server_ts":%d,"prev_events":[%q],"auth_events":[],"hashes":{"sha256":"AAAA"},"signatures":{"x":{"ed25519:a":"BBBB"}},"content":%s}`,
			typ, roomID, depth, 1000+depth, prev, content)
		return store.NewEvent{EventID: id, RoomID: roomID, Type: typ, Sender: "@a:x", Depth: depth, OriginServerTS: 1000 + depth, JSON: []byte(js)}
	}
	create := pdu("m.room.create", "$c", 1, "", `{}`)
	create.StateKey = &sk
	join := pdu("m.room.member", "$j", 2, "$c", `{"membership":"join"}`)
	uid := "@a:x"
	join.StateKey, join.Membership, join.PrevEvents = &uid, "join", []string{"$c"}
	bjoin := pdu("m.room.member", "$bj", 3, "$j", `{"membership":"join"}`)
	bid := "@b:x"
	bjoin.StateKey, bjoin.Membership, bjoin.PrevEvents = &bid, "join", []string{"$j"}
	if _, err := s.CreateRoom(ctx, &store.Room{RoomID: roomID, Version: "10", Creator: "@a:x"}, []store.NewEvent{create, join, bjoin}); err != nil {
		b.Fatal(err)
	}
	prev := "$bj"
	const batch = 1000
	for i := 0; i < n; i += batch {
		evs := make([]store.NewEvent, 0, batch)
		for j := i; j < i+batch && j < n; j++ {
			id := fmt.Sprintf("$m%d", j)
			e := pdu("m.room.message", id, int64(4+j), prev, fmt.Sprintf(`{"msgtype":"m.text","body":"message number %d"}`, j))
			e.Push = []store.PushAction{{UserID: "@b:x", ThreadID: "main", Actions: []byte(`["notify"]`)}}
			if j == i {
				e.PrevEvents = []string{prev}
			}
			evs = append(evs, e)
			prev = id
		}
		if _, err := s.PersistEvents(ctx, roomID, evs); err != nil {
			b.Fatal(err)
		}
	}
}
