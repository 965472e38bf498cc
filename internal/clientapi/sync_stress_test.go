package clientapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"conclave/internal/homeserver/hstest"
)

// EnvStressDuration makes TestSyncStressEveryoneGetsWhatTheyAreOwed run
// longer (a Go duration, e.g. 60s): the benchmark mode of the stress test.
const EnvStressDuration = "CONCLAVE_STRESS_DURATION"

// Many writers of every kind of change that /sync reports, many devices
// long-polling with random filters; afterwards every device must have
// received exactly what it was owed: each to-device message once, its
// user's latest account data, every device-list change of a room-mate, and
// — for devices that never filter rooms out — every message of its rooms
// once and every room-mate's latest receipt. The fast paths of /sync skip
// queries on what the change tracker says; a wrong skip shows here as a
// missing item.
func TestSyncStressEveryoneGetsWhatTheyAreOwed(t *testing.T) {
	duration := 3 * time.Second
	if d, err := time.ParseDuration(os.Getenv(EnvStressDuration)); err == nil {
		duration = d
	}
	s := hstest.Start(t)
	const nUsers, nRooms = 8, 3
	type device struct {
		user, id, token string
		filtered        bool // syncs with random room filters
	}
	users := make([]*hstest.User, nUsers)
	var devices []*device
	for i := range users {
		users[i] = s.Register(t, fmt.Sprintf("u%d", i))
		devices = append(devices, &device{user: users[i].UserID, id: users[i].DeviceID, token: users[i].Token, filtered: i%2 == 1})
		// A second device, logged in through the API.
		r := s.MustOK(t, "POST", "/_matrix/client/v3/login", "", map[string]any{"type": "m.login.password",
			"identifier": map[string]any{"type": "m.id.user", "user": fmt.Sprintf("u%d", i)}, "password": fmt.Sprintf("correct horse battery u%d", i)})
		devices = append(devices, &device{user: users[i].UserID, id: r.Str("device_id"), token: r.Str("access_token"), filtered: i%3 == 0})
	}
	rooms := make([]string, nRooms)
	members := map[string][]string{} // room → user IDs
	for r := range rooms {
		rooms[r] = s.MustOK(t, "POST", "/_matrix/client/v3/createRoom", users[0].Token, map[string]any{"preset": "public_chat"}).Str("room_id")
		members[rooms[r]] = []string{users[0].UserID}
		for i := 1; i < nUsers; i++ {
			if (i+r)%3 != 0 { // every room has some of the users
				s.MustOK(t, "POST", hstest.Path("/join/%s", rooms[r]), users[i].Token, map[string]any{})
				members[rooms[r]] = append(members[rooms[r]], users[i].UserID)
			}
		}
	}
	shares := func(a, b string) bool {
		for _, ms := range members {
			if slices.Contains(ms, a) && slices.Contains(ms, b) {
				return true
			}
		}
		return false
	}
	roomsOf := func(u string) []string {
		var out []string
		for _, r := range rooms {
			if slices.Contains(members[r], u) {
				out = append(out, r)
			}
		}
		return out
	}

	client := &http.Client{Timeout: 30 * time.Second}
	call := func(method, path, token string, body any) (map[string]any, error) {
		var rd io.Reader
		if body != nil {
			j, _ := json.Marshal(body)
			rd = bytes.NewReader(j)
		}
		req, _ := http.NewRequest(method, s.URL+path, rd)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer res.Body.Close()
		data, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("%s %s: %d %s", method, path, res.StatusCode, data)
		}
		var js map[string]any
		return js, json.Unmarshal(data, &js)
	}

	// What each device received, and what it was owed.
	type received struct {
		mu         sync.Mutex
		toDevice   map[string]int            // payload ID → times
		messages   map[string]int            // body → times
		limited    bool                      // a timeline was limited: messages may legitimately be missing
		accountVal float64                   // last value of the stress account data
		changedAt  map[string][]time.Time    // user → when device_lists.changed named them
		receipts   map[string]map[string]any // room → user → last event ID seen in a receipt
	}
	got := map[*device]*received{}
	for _, d := range devices {
		got[d] = &received{toDevice: map[string]int{}, messages: map[string]int{}, changedAt: map[string][]time.Time{}, receipts: map[string]map[string]any{}}
	}
	var (
		mu          sync.Mutex
		sentToDev   = map[string]*device{}   // payload ID → recipient
		sentMsgs    = map[string]string{}    // body → room
		accountLast = map[string]float64{}   // user → last value written
		loginStart  = map[string]time.Time{} // user → when their new device's login began
		lastReceipt = map[string]map[string]string{}
		failures    atomic.Int64
		firstErr    atomic.Value
	)
	fail := func(err error) {
		if failures.Add(1) == 1 {
			firstErr.Store(err)
		}
	}
	recordSync := func(d *device, js map[string]any) {
		g := got[d]
		g.mu.Lock()
		defer g.mu.Unlock()
		evs, _ := dig2(js, "to_device", "events").([]any)
		for _, e := range evs {
			id, _ := dig2(e, "content", "id").(string)
			g.toDevice[id]++
		}
		evs, _ = dig2(js, "account_data", "events").([]any)
		for _, e := range evs {
			if dig2(e, "type") == "org.example.stress" {
				g.accountVal, _ = dig2(e, "content", "v").(float64)
			}
		}
		changed, _ := dig2(js, "device_lists", "changed").([]any)
		now := time.Now()
		for _, u := range changed {
			g.changedAt[u.(string)] = append(g.changedAt[u.(string)], now)
		}
		join, _ := dig2(js, "rooms", "join").(map[string]any)
		for roomID, jr := range join {
			if l, _ := dig2(jr, "timeline", "limited").(bool); l {
				g.limited = true
			}
			tl, _ := dig2(jr, "timeline", "events").([]any)
			for _, e := range tl {
				if dig2(e, "type") == "m.room.message" {
					body, _ := dig2(e, "content", "body").(string)
					g.messages[body]++
				}
			}
			eph, _ := dig2(jr, "ephemeral", "events").([]any)
			for _, e := range eph {
				if dig2(e, "type") != "m.receipt" {
					continue
				}
				content, _ := dig2(e, "content").(map[string]any)
				for evID, byType := range content {
					reads, _ := dig2(byType, "m.read").(map[string]any)
					for u := range reads {
						if g.receipts[roomID] == nil {
							g.receipts[roomID] = map[string]any{}
						}
						g.receipts[roomID][u] = evID
					}
				}
			}
		}
	}

	ctx, stop := context.WithTimeout(context.Background(), duration)
	defer stop()
	var syncers, writers sync.WaitGroup
	syncCtx, stopSyncs := context.WithCancel(context.Background())
	since := make([]string, len(devices))
	for i, d := range devices {
		js, err := call("GET", "/_matrix/client/v3/sync?timeout=0", d.token, nil)
		if err != nil {
			t.Fatal(err)
		}
		since[i] = js["next_batch"].(string)
	}
	for i, d := range devices {
		syncers.Add(1)
		go func() {
			defer syncers.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			for syncCtx.Err() == nil {
				q := url.Values{"timeout": {"200"}, "since": {since[i]}}
				f := map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": 500}}}
				if d.filtered && rng.IntN(2) == 0 {
					// Some rooms left out of this sync.
					mine := roomsOf(d.user)
					f["room"].(map[string]any)["rooms"] = mine[:rng.IntN(len(mine)+1)]
				}
				fj, _ := json.Marshal(f)
				q.Set("filter", string(fj))
				js, err := call("GET", "/_matrix/client/v3/sync?"+q.Encode(), d.token, nil)
				if err != nil {
					fail(err)
					return
				}
				recordSync(d, js)
				since[i] = js["next_batch"].(string)
			}
		}()
	}
	var seq atomic.Int64
	// One write at a time per user: the order of a user's account data and
	// receipts is then the order of the requests, and "latest" is defined.
	var userMu [nUsers]sync.Mutex
	writer := func(rng *rand.Rand) error {
		ui := rng.IntN(nUsers)
		u := users[ui]
		userMu[ui].Lock()
		defer userMu[ui].Unlock()
		switch k := rng.IntN(10); {
		case k < 4: // to-device to a random device
			to := devices[rng.IntN(len(devices))]
			id := fmt.Sprintf("td%d", seq.Add(1))
			mu.Lock()
			sentToDev[id] = to
			mu.Unlock()
			_, err := call("PUT", hstest.Path("/sendToDevice/%s/%s", "org.example.stress", id), u.Token,
				map[string]any{"messages": map[string]any{to.user: map[string]any{to.id: map[string]any{"id": id}}}})
			return err
		case k < 7: // a message into one of the user's rooms
			mine := roomsOf(u.UserID)
			if len(mine) == 0 {
				return nil
			}
			r := mine[rng.IntN(len(mine))]
			body := fmt.Sprintf("m%d", seq.Add(1))
			mu.Lock()
			sentMsgs[body] = r
			mu.Unlock()
			js, err := call("PUT", hstest.Path("/rooms/%s/send/m.room.message/%s", r, body), u.Token, map[string]any{"msgtype": "m.text", "body": body})
			if err != nil {
				return err
			}
			// Read receipts move with messages: the sender reads its own.
			if rng.IntN(2) == 0 {
				ev := js["event_id"].(string)
				if _, err := call("POST", hstest.Path("/rooms/%s/receipt/m.read/%s", r, ev), u.Token, map[string]any{}); err != nil {
					return err
				}
				mu.Lock()
				if lastReceipt[r] == nil {
					lastReceipt[r] = map[string]string{}
				}
				lastReceipt[r][u.UserID] = ev
				mu.Unlock()
			}
			return nil
		case k < 9: // account data
			mu.Lock()
			v := accountLast[u.UserID] + 1
			accountLast[u.UserID] = v
			mu.Unlock()
			_, err := call("PUT", hstest.Path("/user/%s/account_data/%s", u.UserID, "org.example.stress"), u.Token, map[string]any{"v": v})
			return err
		default: // a user logs in a new device, once per user
			name := u.UserID[1:3]
			mu.Lock()
			_, done := loginStart[u.UserID]
			if !done {
				loginStart[u.UserID] = time.Now()
			}
			mu.Unlock()
			if done {
				return nil
			}
			_, err := call("POST", "/_matrix/client/v3/login", "", map[string]any{"type": "m.login.password",
				"identifier": map[string]any{"type": "m.id.user", "user": name}, "password": "correct horse battery " + name})
			return err
		}
	}
	for w := range 6 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 2))
			for ctx.Err() == nil {
				if err := writer(rng); err != nil {
					fail(err)
					return
				}
			}
		}()
	}
	writers.Wait()
	stopSyncs()
	syncers.Wait()
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d requests failed; first: %v", n, firstErr.Load())
	}
	// Every device catches up, unfiltered, until a sync brings nothing.
	for i, d := range devices {
		for range 10 {
			js, err := call("GET", "/_matrix/client/v3/sync?timeout=0&since="+url.QueryEscape(since[i]), d.token, nil)
			if err != nil {
				t.Fatal(err)
			}
			recordSync(d, js)
			next := js["next_batch"].(string)
			if next == since[i] {
				break
			}
			since[i] = next
		}
	}

	// What each device was owed.
	missing := 0
	report := func(format string, args ...any) {
		missing++
		if missing <= 20 {
			t.Errorf(format, args...)
		}
	}
	for id, to := range sentToDev {
		if n := got[to].toDevice[id]; n != 1 {
			report("to-device %s reached %s/%s %d times", id, to.user, to.id, n)
		}
	}
	for _, d := range devices {
		g := got[d]
		if want := accountLast[d.user]; want != 0 && g.accountVal != want {
			report("%s/%s: account data %v, want %v", d.user, d.id, g.accountVal, want)
		}
		for u, start := range loginStart {
			if !shares(u, d.user) {
				continue
			}
			if !slices.ContainsFunc(g.changedAt[u], func(at time.Time) bool { return at.After(start) }) {
				report("%s/%s never saw %s's new device in device_lists.changed", d.user, d.id, u)
			}
		}
		if d.filtered {
			continue
		}
		for body, r := range sentMsgs {
			if !slices.Contains(members[r], d.user) {
				continue
			}
			if n := g.messages[body]; n > 1 || n == 0 && !g.limited {
				report("%s/%s: message %s arrived %d times", d.user, d.id, body, n)
			}
		}
		for _, r := range roomsOf(d.user) {
			for u, ev := range lastReceipt[r] {
				if g.receipts[r][u] != ev {
					report("%s/%s: %s's receipt in %s is %v, want %s", d.user, d.id, u, r, g.receipts[r][u], ev)
				}
			}
		}
	}
	t.Logf("%d to-device messages, %d room messages, %d logins, %d devices; %d items missing", len(sentToDev), len(sentMsgs), len(loginStart), len(devices), missing)
}
