package hostile

import (
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"

	"conclave/internal/homeserver/hstest"
)

// A logged-in client naming 100,000 room IDs that do not exist — leaving,
// joining, reading state and history, sending, typing — leaves the server's
// memory where it was: no per-room entry survives a room that was never
// found (the room service's state cache, room versions, typing).
func TestUnknownRoomIDsLeaveMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 requests")
	}
	s := hstest.Start(t)
	u := s.CreateUser(t, "mallory")
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	do := func(method, path, body string) error {
		req, _ := http.NewRequest(method, s.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+u.Token)
		res, err := client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode < 400 || res.StatusCode >= 500 {
			return fmt.Errorf("%s %s: %d", method, path, res.StatusCode)
		}
		return nil
	}
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	touch := func(from, to int) error {
		const workers = 8
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := from + w; i < to; i += workers {
					id := fmt.Sprintf("!nosuchroom%d:localhost", i)
					p := "/_matrix/client/v3/rooms/" + id
					var err error
					switch i % 5 {
					case 0:
						err = do("POST", p+"/leave", "{}")
					case 1:
						err = do("GET", p+"/state", "")
					case 2:
						err = do("GET", p+"/messages?dir=b", "")
					case 3:
						err = do("PUT", p+"/send/m.room.message/t"+fmt.Sprint(i), `{"msgtype":"m.text","body":"x"}`)
					case 4:
						err = do("PUT", p+"/typing/"+u.UserID, `{"typing":true,"timeout":30000}`)
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		return <-errs
	}
	// Warm up every path first, so that what is measured is growth.
	if err := touch(0, 5000); err != nil {
		t.Fatal(err)
	}
	before := heap()
	if err := touch(5000, 100_000); err != nil {
		t.Fatal(err)
	}
	after := heap()
	grew := int64(after) - int64(before)
	t.Logf("heap in use %d KB before, %d KB after 95,000 unknown room IDs (%+d KB)", before>>10, after>>10, grew>>10)
	// A kept entry costs at least ~150 bytes: 95,000 of them would be 14 MB.
	if grew > 4<<20 {
		t.Fatalf("heap grew by %d KB", grew>>10)
	}
}
