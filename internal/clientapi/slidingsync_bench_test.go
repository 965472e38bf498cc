package clientapi_test

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"conclave/internal/homeserver/hstest"
)

// slidingAccount is a server with an account in n rooms, each with a
// message from another member (benchmarks share it: building it is slow).
func slidingAccount(b *testing.B, n int) (*hstest.Server, *hstest.User, []string) {
	s := hstest.Start(b)
	alice := s.CreateUser(b, "alice")
	bob := s.CreateUser(b, "bob")
	rooms := make([]string, n)
	var wg sync.WaitGroup
	work := make(chan int)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				r := s.MustOK(b, "POST", "/_matrix/client/v3/createRoom", bob.Token, map[string]any{"preset": "public_chat", "name": fmt.Sprint("Room ", i)})
				id := r.Str("room_id")
				s.MustOK(b, "POST", hstest.Path("/join/%s", id), alice.Token, map[string]any{})
				s.MustOK(b, "PUT", hstest.Path("/rooms/%s/send/m.room.message/%s", id, "m"), bob.Token, map[string]any{"msgtype": "m.text", "body": "hi"})
				rooms[i] = id
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	return s, alice, rooms
}

// BenchmarkSlidingSync1000Rooms: an account in 1,000 rooms; Element X's
// all_rooms list with range 0–19 and timeline_limit 1.
//
//	first: a new connection's first response (every room's bump stamp, the
//	       20 rooms of the window in full);
//	first-after-restart: the same, the first request after a restart;
//	incremental: one new message in a room of the window, then the next
//	       response from the previous position.
func BenchmarkSlidingSync1000Rooms(b *testing.B) {
	s, alice, rooms := slidingAccount(b, 1000)
	txn := 0
	body := roomListBody([][]int{{0, 19}}, nil)
	b.Run("first", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			r := ssOK(b, s, alice, "", 0, body)
			if len(dig(r.JSON, "rooms").(map[string]any)) != 20 {
				b.Fatalf("rooms: %s", r.Body)
			}
		}
	})
	// The first request after the server started: nothing cached (bump
	// stamps, memberships, room state).
	outer := b // the restarted server outlives this sub-benchmark
	b.Run("first-after-restart", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			s.Stop()
			s = hstest.StartConfig(outer, s.Config)
			b.StartTimer()
			r := ssOK(b, s, alice, "", 0, body)
			if len(dig(r.JSON, "rooms").(map[string]any)) != 20 {
				b.Fatalf("rooms: %s", r.Body)
			}
		}
	})
	b.Run("incremental", func(b *testing.B) {
		pos := ssOK(b, s, alice, "", 0, body).Str("pos")
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			txn++
			s.MustOK(b, "PUT", hstest.Path("/rooms/%s/send/m.room.message/%s", rooms[i%10], fmt.Sprint("b", txn)), alice.Token, map[string]any{"msgtype": "m.text", "body": "x"})
			b.StartTimer()
			r := ssOK(b, s, alice, pos, 0, body)
			if len(dig(r.JSON, "rooms").(map[string]any)) != 1 {
				b.Fatalf("rooms: %s", r.Body)
			}
			pos = r.Str("pos")
		}
	})
}

// BenchmarkSlidingSyncIdleMemory compares the memory (heap and stacks, of
// this whole process: server and clients) of n idle long-polls of sliding
// sync with n of /sync, each user in one room. The load tool's idle
// scenario measures /sync's server side alone (about 25 KB per client).
func BenchmarkSlidingSyncIdleMemory(b *testing.B) {
	const n = 300
	s := hstest.Start(b)
	s.Config.MaxSyncsPerDevice = 4
	users := make([]*hstest.User, n)
	pos := make([]string, n)
	since := make([]string, n)
	body := roomListBody([][]int{{0, 19}}, nil)
	for i := range users {
		u := s.CreateUser(b, fmt.Sprint("idle", i))
		users[i] = u
		s.MustOK(b, "POST", "/_matrix/client/v3/createRoom", u.Token, map[string]any{"preset": "public_chat"})
		pos[i] = ssOK(b, s, u, "", 0, body).Str("pos")
		since[i] = s.MustOK(b, "GET", "/_matrix/client/v3/sync", u.Token, nil).Str("next_batch")
	}
	measure := func(name string, poll func(i int)) {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		waiting := s.HS.Notifier.Waiting()
		for i := range users {
			go poll(i)
		}
		for s.HS.Notifier.Waiting() < waiting+n {
			time.Sleep(10 * time.Millisecond)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		per := (float64(after.HeapInuse+after.StackInuse) - float64(before.HeapInuse+before.StackInuse)) / n
		b.ReportMetric(per/1024, name+"-KB/poll")
	}
	for i := 0; i < b.N; i++ {
		measure("sync", func(i int) {
			s.Do(b, "GET", "/_matrix/client/v3/sync?timeout=3000&since="+since[i], users[i].Token, nil)
		})
		time.Sleep(3500 * time.Millisecond)
		measure("sliding", func(i int) { ss(b, s, users[i], pos[i], 3000, body) })
		time.Sleep(3500 * time.Millisecond)
	}
}
