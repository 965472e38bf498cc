package clustertest

import (
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"conclave/internal/homeserver/hstest"
	"conclave/internal/store/storetest/pgtest"
)

// Two processes on one database, writers of to-device messages, messages
// and account data going through either, and devices whose every /sync goes
// to the other process than the last one: each device must receive exactly
// what it is owed. The /sync fast paths of each process rest on what it has
// heard of the other's writes (changes/feed.go); a change recorded too late,
// or a room's kept events not dropped after the other process wrote to it,
// shows here as a missing or repeated item.
func TestTwoProcessesDeliverExactly(t *testing.T) {
	if os.Getenv(hstest.EnvDatabase) != "postgres" {
		t.Skipf("needs %s=postgres (the PostgreSQL pass of make test)", hstest.EnvDatabase)
	}
	dsn := pgtest.NewDatabase(t)
	bin := hstest.BuildBinary(t)
	procs := []*proc{start(t, bin, dsn, t.TempDir()), start(t, bin, dsn, t.TempDir())}
	const nUsers = 6
	type user struct{ id, device, token string }
	users := make([]user, nUsers)
	for i := range users {
		p := procs[i%2]
		m := p.must(t, "POST", "/register", "", map[string]any{"username": fmt.Sprintf("x%d", i), "password": "cluster-pw",
			"auth": map[string]string{"type": "m.login.dummy"}})
		users[i] = user{m["user_id"].(string), m["device_id"].(string), m["access_token"].(string)}
	}
	rooms := make([]string, 2)
	for r := range rooms {
		rooms[r] = procs[r].must(t, "POST", "/createRoom", users[0].token, map[string]any{"preset": "public_chat"})["room_id"].(string)
		for i := 1; i < nUsers; i++ {
			procs[i%2].must(t, "POST", "/join/"+esc(rooms[r]), users[i].token, map[string]any{})
		}
	}

	var (
		mu         sync.Mutex
		toDevice   = map[string]int{} // payload ID → recipient index
		messages   = map[string]bool{}
		accountVal = make([]float64, nUsers)
		failures   atomic.Int64
		firstErr   atomic.Value
	)
	fail := func(err error) {
		if failures.Add(1) == 1 {
			firstErr.Store(err)
		}
	}
	type got struct {
		toDevice map[string]int
		messages map[string]int
		account  float64
		limited  bool
	}
	received := make([]*got, nUsers)
	for i := range received {
		received[i] = &got{toDevice: map[string]int{}, messages: map[string]int{}}
	}
	filter := url.QueryEscape(`{"room":{"timeline":{"limit":500}}}`)
	record := func(i int, m map[string]any) {
		g := received[i]
		if td, ok := m["to_device"].(map[string]any); ok {
			evs, _ := td["events"].([]any)
			for _, e := range evs {
				c, _ := e.(map[string]any)["content"].(map[string]any)
				id, _ := c["id"].(string)
				g.toDevice[id]++
			}
		}
		if ad, ok := m["account_data"].(map[string]any); ok {
			evs, _ := ad["events"].([]any)
			for _, e := range evs {
				if ev := e.(map[string]any); ev["type"] == "org.example.x" {
					c, _ := ev["content"].(map[string]any)
					g.account, _ = c["v"].(float64)
				}
			}
		}
		for _, r := range rooms {
			for _, e := range roomTimeline(m, r) {
				ev := e.(map[string]any)
				if ev["type"] == "m.room.message" {
					c, _ := ev["content"].(map[string]any)
					body, _ := c["body"].(string)
					g.messages[body]++
				}
			}
			rs, _ := m["rooms"].(map[string]any)
			join, _ := rs["join"].(map[string]any)
			if jr, ok := join[r].(map[string]any); ok {
				if tl, ok := jr["timeline"].(map[string]any); ok && tl["limited"] == true {
					g.limited = true
				}
			}
		}
	}
	since := make([]string, nUsers)
	for i, u := range users {
		since[i] = procs[0].must(t, "GET", "/sync?timeout=0&filter="+filter, u.token, nil)["next_batch"].(string)
	}
	stop := make(chan struct{})
	var syncers, writers sync.WaitGroup
	for i, u := range users {
		syncers.Add(1)
		go func() {
			defer syncers.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				st, m, err := procs[n%2].do("GET", "/sync?timeout=200&filter="+filter+"&since="+url.QueryEscape(since[i]), u.token, nil)
				if err != nil || st != 200 {
					fail(fmt.Errorf("sync: %d %v %v", st, m, err))
					return
				}
				record(i, m)
				since[i] = m["next_batch"].(string)
			}
		}()
	}
	var seq atomic.Int64
	var userMu [nUsers]sync.Mutex
	deadline := time.Now().Add(3 * time.Second)
	for w := range 4 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 3))
			for time.Now().Before(deadline) {
				ui := rng.IntN(nUsers)
				u, p := users[ui], procs[rng.IntN(2)]
				var st int
				var err error
				switch k := rng.IntN(3); k {
				case 0:
					to := rng.IntN(nUsers)
					id := fmt.Sprintf("td%d", seq.Add(1))
					mu.Lock()
					toDevice[id] = to
					mu.Unlock()
					st, _, err = p.do("PUT", "/sendToDevice/org.example.x/"+id, u.token,
						map[string]any{"messages": map[string]any{users[to].id: map[string]any{users[to].device: map[string]any{"id": id}}}})
				case 1:
					body := fmt.Sprintf("m%d", seq.Add(1))
					mu.Lock()
					messages[body] = true
					mu.Unlock()
					st, _, err = p.do("PUT", "/rooms/"+esc(rooms[rng.IntN(2)])+"/send/m.room.message/"+body, u.token, map[string]any{"msgtype": "m.text", "body": body})
				case 2:
					userMu[ui].Lock()
					accountVal[ui]++
					st, _, err = p.do("PUT", "/user/"+esc(u.id)+"/account_data/org.example.x", u.token, map[string]any{"v": accountVal[ui]})
					userMu[ui].Unlock()
				}
				if err != nil || st != 200 {
					fail(fmt.Errorf("write: %d %v", st, err))
					return
				}
			}
		}()
	}
	writers.Wait()
	close(stop)
	syncers.Wait()
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d requests failed; first: %v", n, firstErr.Load())
	}
	for i, u := range users {
		for n := range 10 {
			m := procs[n%2].must(t, "GET", "/sync?timeout=0&filter="+filter+"&since="+url.QueryEscape(since[i]), u.token, nil)
			record(i, m)
			if m["next_batch"] == since[i] && n > 0 {
				break
			}
			since[i] = m["next_batch"].(string)
		}
	}
	missing := 0
	report := func(format string, args ...any) {
		if missing++; missing <= 20 {
			t.Errorf(format, args...)
		}
	}
	for id, to := range toDevice {
		if n := received[to].toDevice[id]; n != 1 {
			report("to-device %s reached %s %d times", id, users[to].id, n)
		}
	}
	for i, g := range received {
		if accountVal[i] != 0 && g.account != accountVal[i] {
			report("%s: account data %v, want %v", users[i].id, g.account, accountVal[i])
		}
		for body := range messages {
			if n := g.messages[body]; n > 1 || n == 0 && !g.limited {
				report("%s: message %s arrived %d times", users[i].id, body, n)
			}
		}
	}
	t.Logf("%d to-device messages, %d room messages, %d users syncing across both processes; %d items missing", len(toDevice), len(messages), nUsers, missing)
}

// A one-time key claimed through one process changes the counts the other
// process reports (and may cache) for the device.
func TestKeyCountsAcrossProcesses(t *testing.T) {
	if os.Getenv(hstest.EnvDatabase) != "postgres" {
		t.Skipf("needs %s=postgres (the PostgreSQL pass of make test)", hstest.EnvDatabase)
	}
	dsn := pgtest.NewDatabase(t)
	bin := hstest.BuildBinary(t)
	a, b := start(t, bin, dsn, t.TempDir()), start(t, bin, dsn, t.TempDir())
	m := a.must(t, "POST", "/register", "", map[string]any{"username": "owner", "password": "cluster-pw", "auth": map[string]string{"type": "m.login.dummy"}})
	owner, device, token := m["user_id"].(string), m["device_id"].(string), m["access_token"].(string)
	claimer := a.register(t, "claimer")
	otks := map[string]any{}
	for i := range 5 {
		otks[fmt.Sprintf("curve25519:K%d", i)] = fmt.Sprintf("key%d", i)
	}
	a.must(t, "POST", "/keys/upload", token, map[string]any{"one_time_keys": otks})
	count := func(m map[string]any) float64 {
		c, _ := m["device_one_time_keys_count"].(map[string]any)
		n, _ := c["curve25519"].(float64)
		return n
	}
	since := ""
	syncB := func() map[string]any {
		p := "/sync?timeout=0"
		if since != "" {
			p += "&since=" + url.QueryEscape(since)
		}
		m := b.must(t, "GET", p, token, nil)
		since = m["next_batch"].(string)
		return m
	}
	// Enough syncs for B to answer the counts from its cache.
	for range 4 {
		if n := count(syncB()); n != 5 {
			t.Fatalf("count through B: %v, want 5", n)
		}
	}
	a.must(t, "POST", "/keys/claim", claimer, map[string]any{"one_time_keys": map[string]any{owner: map[string]any{device: "curve25519"}}})
	// B reports the claim once it has heard of it: within a few syncs.
	for range 50 {
		if n := count(syncB()); n == 4 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("B never reported the claim made through A")
}
