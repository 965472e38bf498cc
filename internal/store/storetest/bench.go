package storetest

import (
	"fmt"
	"sync/atomic"
	"testing"

	"conclave/internal/store"
)

// BenchOpener returns a fresh, empty store for a benchmark.
type BenchOpener func(b *testing.B) store.Store

// Bench runs the store benchmarks shared by the backends:
//   - PersistEvent: one message per transaction into one room (the room
//     service's hot path), sequential;
//   - PersistEventParallel: the same from parallel writers, each in its own
//     room (writers contend only for stream positions);
//   - RoomEvents: a 20-event page of a 1000-event room.
func Bench(b *testing.B, open BenchOpener) {
	b.Run("PersistEvent", func(b *testing.B) {
		s := open(b)
		r := benchRoom(b, s, "!bench:x")
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			e := r.ev("m.room.message", nil, "@a:x", `{"msgtype":"m.text","body":"hello"}`)
			e.Depth = r.depth + 1
			if _, err := s.PersistEvents(ctx(), r.id, []store.NewEvent{e}); err != nil {
				b.Fatal(err)
			}
			r.head = []string{e.EventID}
			r.depth++
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("PersistEventParallel", func(b *testing.B) {
		s := open(b)
		var n atomic.Int64
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			r := benchRoom(b, s, fmt.Sprintf("!bench%d:x", n.Add(1)))
			for pb.Next() {
				e := r.ev("m.room.message", nil, "@a:x", `{"msgtype":"m.text","body":"hello"}`)
				if _, err := s.PersistEvents(ctx(), r.id, []store.NewEvent{e}); err != nil {
					b.Error(err)
					return
				}
				r.head = []string{e.EventID}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("RoomEvents", func(b *testing.B) {
		s := open(b)
		r := benchRoom(b, s, "!bench:x")
		for i := 0; i < 1000; i += 50 {
			var evs []store.NewEvent
			for j := 0; j < 50; j++ {
				evs = append(evs, r.ev("m.room.message", nil, "@a:x", `{"body":"x"}`))
			}
			evs[0].PrevEvents = nil
			if _, err := s.PersistEvents(ctx(), r.id, evs); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			evs, err := s.RoomEvents(ctx(), store.RoomEventsQuery{RoomID: r.id, Backwards: true, Limit: 20})
			if err != nil || len(evs) != 20 {
				b.Fatal(err, len(evs))
			}
		}
	})
}

func benchRoom(b *testing.B, s store.Store, id string) *room {
	r := &room{s: s, id: id, ts: 1000}
	create := r.ev("m.room.create", sk(""), "@a:x", `{}`)
	join := r.member("@a:x", "join")
	join.Depth = 2
	if _, err := s.CreateRoom(ctx(), &store.Room{RoomID: id, Version: "10", Creator: "@a:x"}, []store.NewEvent{create, join}); err != nil {
		b.Fatal(err)
	}
	r.head = []string{join.EventID}
	r.depth = 2
	return r
}
