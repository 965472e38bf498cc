package clientapi_test

import (
	"fmt"
	"sync"
	"testing"

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
