package clientapi_test

import (
	"net/http"
	"testing"

	"conclave/internal/homeserver/hstest"
)

// slidingWindow holds a write after its commit (hstest.Gates), runs a
// sliding sync request of the connection in that moment, releases the
// write, and runs two more: what the write changed must come in exactly one
// of the three. next gives each request's body from the previous answer
// (nil: the first).
func slidingWindow(t *testing.T, s *hstest.Server, g *hstest.Gates, op hstest.Op, u *hstest.User, pos string,
	next func(prev *hstest.Response) map[string]any, write func() int) []*hstest.Response {
	t.Helper()
	gate := g.Arm(t, op)
	done := make(chan int, 1)
	go func() {
		st := http.StatusOK
		defer func() { done <- st }()
		st = write()
	}()
	gate.WaitCommitted(t)
	r1 := ssOK(t, s, u, pos, 0, next(nil))
	gate.Release()
	if st := <-done; st != http.StatusOK {
		t.Fatalf("held write answered %d", st)
	}
	r2 := ssOK(t, s, u, r1.Str("pos"), 0, next(r1))
	r3 := ssOK(t, s, u, r2.Str("pos"), 0, next(r2))
	return []*hstest.Response{r1, r2, r3}
}

// TestSlidingSyncToDeviceCommittedDuringRequest: a to-device message
// committed while a request is being answered reaches the device once.
func TestSlidingSyncToDeviceCommittedDuringRequest(t *testing.T) {
	s, g := startGated(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	first := ssOK(t, s, bob, "", 0, encryptionSince(""))
	since, _ := dig(first.JSON, "extensions", "to_device", "next_batch").(string)
	rs := slidingWindow(t, s, g, hstest.OpSendToDevice, bob, first.Str("pos"), func(prev *hstest.Response) map[string]any {
		if prev != nil {
			since, _ = dig(prev.JSON, "extensions", "to_device", "next_batch").(string)
		}
		return encryptionSince(since)
	}, func() int {
		return s.Do(t, "PUT", hstest.Path("/sendToDevice/%s/%s", "m.room_key", "k1"), alice.Token,
			map[string]any{"messages": map[string]any{bob.UserID: map[string]any{bob.DeviceID: map[string]any{"session_id": "s1"}}}}).Status
	})
	n := 0
	for _, r := range rs {
		n += len(toDeviceEvents(r))
	}
	if n != 1 {
		t.Fatalf("the to-device message arrived %d times, want once", n)
	}
}

// TestSlidingSyncAccountDataCommittedDuringRequest: global account data
// committed while a request is being answered reaches the client once.
func TestSlidingSyncAccountDataCommittedDuringRequest(t *testing.T) {
	s, g := startGated(t)
	alice := s.CreateUser(t, "alice")
	createRoom(t, s, alice, map[string]any{"preset": "public_chat"})
	body := func(*hstest.Response) map[string]any { return roomListBody([][]int{{0, 9}}, nil) }
	first := ssOK(t, s, alice, "", 0, body(nil))
	rs := slidingWindow(t, s, g, hstest.OpPutAccountData, alice, first.Str("pos"), body, func() int {
		return s.Do(t, "PUT", hstest.Path("/user/%s/account_data/%s", alice.UserID, "org.example.test"), alice.Token, map[string]any{"v": 1}).Status
	})
	n := 0
	for _, r := range rs {
		gl, _ := dig(r.JSON, "extensions", "account_data", "global").([]any)
		for _, e := range gl {
			if dig(e, "type") == "org.example.test" {
				n++
			}
		}
	}
	if n != 1 {
		t.Fatalf("the account data arrived %d times, want once", n)
	}
}
