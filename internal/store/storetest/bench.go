package storetest

import (
	"encoding/json"
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
//   - RoomEvents: a 20-event page of a 1000-event room;
//   - SessionByToken, DeviceKeys, KeysUploadClaim, SendToDevice: the
//     accounts and keys areas (an access token lookup; the keys of 10
//     devices; 5 one-time keys uploaded and one claimed; a to-device message
//     to 5 devices);
//   - PruneBacklog: one pass of notification pruning over 20,000 old
//     notifications of a 200-member room that one member never reads.
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
	b.Run("PruneBacklog", func(b *testing.B) { benchPruneBacklog(b, open, 200, 20_000) })
	benchAreas(b, open)
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

// benchAccounts creates user u with n devices D0…D(n-1), each with device
// keys, the access token of device Di being "tok-Di".
func benchAccounts(b *testing.B, s store.Store, u string, n int) {
	if err := s.CreateUser(ctx(), &store.User{UserID: u, CreatedTS: 1}); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < n; i++ {
		d := fmt.Sprintf("D%d", i)
		if err := s.CreateDevice(ctx(), &store.Device{UserID: u, DeviceID: d, CreatedTS: 1}, store.NewToken{AccessHash: []byte("tok-" + d)}); err != nil {
			b.Fatal(err)
		}
		if _, _, err := s.UploadKeys(ctx(), &store.KeyUpload{UserID: u, DeviceID: d, DeviceKeys: devKeys(u, d, "ed-"+d)}); err != nil {
			b.Fatal(err)
		}
	}
}

func benchAreas(b *testing.B, open BenchOpener) {
	b.Run("SessionByToken", func(b *testing.B) {
		s := open(b)
		benchAccounts(b, s, "@a:x", 5)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := s.SessionByToken(ctx(), []byte("tok-D3")); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("DeviceKeys", func(b *testing.B) {
		s := open(b)
		benchAccounts(b, s, "@a:x", 10)
		ids := []string{"D0", "D1", "D2", "D3", "D4", "D5", "D6", "D7", "D8", "D9"}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if ks, err := s.DeviceKeys(ctx(), "@a:x", ids); err != nil || len(ks) != 10 {
				b.Fatal(err, len(ks))
			}
		}
	})
	b.Run("KeysUploadClaim", func(b *testing.B) {
		s := open(b)
		benchAccounts(b, s, "@a:x", 1)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			var keys []store.OneTimeKey
			for j := 0; j < 5; j++ {
				keys = append(keys, otk("signed_curve25519", fmt.Sprintf("%d-%d", i, j)))
			}
			if _, _, err := s.UploadKeys(ctx(), &store.KeyUpload{UserID: "@a:x", DeviceID: "D0", OneTimeKeys: keys}); err != nil {
				b.Fatal(err)
			}
			if got, err := s.ClaimKeys(ctx(), []store.ClaimRequest{{UserID: "@a:x", DeviceID: "D0", Algorithm: "signed_curve25519"}}); err != nil || len(got) != 1 {
				b.Fatal(err, got)
			}
		}
	})
	b.Run("SendToDevice", func(b *testing.B) {
		s := open(b)
		benchAccounts(b, s, "@a:x", 5)
		msg := []store.ToDeviceSend{{UserID: "@a:x", DeviceID: "*", JSON: json.RawMessage(`{"type":"m.x","content":{}}`)}}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, _, err := s.SendToDevice(ctx(), "@a:x", "D0", fmt.Sprint(i), msg, nil); err != nil {
				b.Fatal(err)
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
