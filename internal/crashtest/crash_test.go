// Package crashtest kills a real conclave process with SIGKILL while clients
// write to it as fast as they can, restarts it, and checks that everything
// the server acknowledged is still there, exactly once (issue 7). It runs on
// SQLite, and on PostgreSQL in the PostgreSQL pass of make test
// (CONCLAVE_TEST_DATABASE=postgres; under CI=true a missing PostgreSQL fails
// it, as pgtest does everywhere).
package crashtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"conclave/internal/homeserver/hstest"
	"conclave/internal/store/sqlite"
	"conclave/internal/store/storetest/pgtest"
)

const (
	kills   = 24 // SIGKILLs while clients write (plus some during recovery)
	senders = 4  // concurrent message senders, one device each
)

// proc is one running conclave process.
type proc struct {
	cmd  *exec.Cmd
	url  string
	done chan struct{}
}

// harness owns the binary, the data directory and everything the clients
// were told.
type harness struct {
	t       *testing.T
	bin     string
	dataDir string
	dsn     string // PostgreSQL database URL; "" for SQLite in dataDir
	client  *http.Client
	mu      sync.Mutex
	url     string
	bad     []string // panics and internal errors seen in the server logs
	extra   []string // more serve flags
}

// start launches the server and waits for its "listening" log line.
func (h *harness) start() *proc {
	h.t.Helper()
	args := []string{"serve",
		"--server-name", "localhost", "--data-dir", h.dataDir, "--listen", "127.0.0.1:0",
		"--enable-registration", "--rate-limits=false", "--password-hash-memory-kib", "64",
		"--log-format", "json", "--log-level", "info", "--shutdown-timeout", "1s"}
	if h.dsn != "" {
		args = append(args, "--database", h.dsn)
	}
	args = append(args, h.extra...)
	cmd := exec.Command(h.bin, args...)
	stderr, err := cmd.StdoutPipe()
	if err != nil {
		h.t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	// A failing test must not leave a server running: kill it at the end
	// whatever happened (a no-op if the test already killed it).
	h.t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	p := &proc{cmd: cmd, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var line struct {
				Level, Msg, Addr string
			}
			if json.Unmarshal(sc.Bytes(), &line) != nil {
				continue
			}
			switch {
			case line.Msg == "listening":
				addr <- line.Addr
			case line.Msg == "panic" || line.Msg == "internal error":
				h.mu.Lock()
				h.bad = append(h.bad, sc.Text())
				h.mu.Unlock()
			}
		}
	}()
	select {
	case a := <-addr:
		p.url = "http://" + a
	case <-p.done:
		cmd.Wait()
		h.t.Fatal("server exited before listening")
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		h.t.Fatal("server did not listen within 30s")
	}
	h.mu.Lock()
	h.url = p.url
	h.mu.Unlock()
	return p
}

func (p *proc) kill(t *testing.T) {
	p.cmd.Process.Signal(os.Kill) // SIGKILL: no shutdown, no flush
	p.cmd.Wait()
	<-p.done
}

// do sends one request; err is a transport error (the server is gone).
func (h *harness) do(method, path, token string, body any) (int, map[string]any, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	h.mu.Lock()
	base := h.url
	h.mu.Unlock()
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := h.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		return 0, nil, err
	}
	var out map[string]any
	json.Unmarshal(data, &out)
	return res.StatusCode, out, nil
}

// must is do for the checking phase, where the server is up: anything but
// 200 fails the test.
func (h *harness) must(method, path, token string, body any) map[string]any {
	h.t.Helper()
	st, out, err := h.do(method, path, token, body)
	if err != nil || st != 200 {
		h.t.Fatalf("%s %s: %d %v %v", method, path, st, out, err)
	}
	return out
}

type user struct{ id, device, token string }

func (h *harness) login(name string) user {
	h.t.Helper()
	out := h.must("POST", "/_matrix/client/v3/login", "", map[string]any{"type": "m.login.password",
		"identifier": map[string]string{"type": "m.id.user", "user": name}, "password": "crash-test-pw-" + name})
	return user{out["user_id"].(string), out["device_id"].(string), out["access_token"].(string)}
}

// state is what the clients know the server acknowledged.
type state struct {
	mu      sync.Mutex
	acked   map[string]string // txn body -> event ID (messages)
	byID    map[string]string // event ID -> body
	pending map[int]string    // sender -> txn in flight at the kill
	order   []string          // acked event IDs, in ack order

	adAcked, adPending int // account data counter
	tdAcked            map[int]bool
	tdPending          int // to-device seq in flight (0: none)
	rcAcked, rcPending string

	syncTok, syncLast string // a /sync token held across the crash, and the last room event it covered
}

func esc(s string) string { return url.PathEscape(s) }

func TestCrashKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a real server")
	}
	h := &harness{t: t, bin: hstest.BuildBinary(t), dataDir: t.TempDir(),
		client: &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}}
	backend := "SQLite"
	if os.Getenv(hstest.EnvDatabase) == "postgres" {
		h.dsn, backend = pgtest.NewDatabase(t), "PostgreSQL"
	}
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 7))
	t.Logf("kill timing seed %d", seed)

	p := h.start()
	for _, name := range []string{"alice", "bob"} {
		h.must("POST", "/_matrix/client/v3/register", "", map[string]any{"username": name, "password": "crash-test-pw-" + name,
			"auth": map[string]string{"type": "m.login.dummy"}})
	}
	syncer := h.login("alice")
	bob := h.login("bob")
	devs := make([]user, senders)
	for i := range devs {
		devs[i] = h.login("alice")
	}
	roomID := h.must("POST", "/_matrix/client/v3/createRoom", syncer.token, map[string]any{"preset": "public_chat"})["room_id"].(string)
	h.must("POST", "/_matrix/client/v3/join/"+esc(roomID), bob.token, map[string]any{})

	st := &state{acked: map[string]string{}, byID: map[string]string{}, pending: map[int]string{}, tdAcked: map[int]bool{}}
	bobTok := "" // bob's to-device sync position
	tdSeen := map[int]int{}
	filter := url.QueryEscape(`{"room":{"timeline":{"limit":500}}}`)
	// The held token starts from an initial sync.
	first := h.must("GET", "/_matrix/client/v3/sync?filter="+filter, syncer.token, nil)
	st.syncTok = first["next_batch"].(string)
	st.syncLast = lastTimelineEvent(first, roomID, "")

	start := time.Now()
	txnN, killed := 0, 0
	for cycle := 0; cycle < kills; cycle++ {
		ctx, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for i := range devs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; ctx.Err() == nil; n++ {
					txn := fmt.Sprintf("c%d-d%d-%d", cycle, i, n)
					st.mu.Lock()
					st.pending[i] = txn
					st.mu.Unlock()
					code, out, err := h.do("PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/m.room.message/%s", esc(roomID), txn),
						devs[i].token, map[string]any{"msgtype": "m.text", "body": txn})
					if err != nil {
						return // killed: the txn stays pending
					}
					if code != 200 {
						t.Errorf("send %s: %d %v", txn, code, out)
						return
					}
					st.mu.Lock()
					delete(st.pending, i)
					st.acked[txn] = out["event_id"].(string)
					st.byID[out["event_id"].(string)] = txn
					st.order = append(st.order, out["event_id"].(string))
					st.mu.Unlock()
				}
			}()
		}
		wg.Add(4)
		go func() { // account data: a counter written in sequence
			defer wg.Done()
			for ctx.Err() == nil {
				st.mu.Lock()
				n := max(st.adAcked, st.adPending) + 1
				st.adPending = n
				st.mu.Unlock()
				code, _, err := h.do("PUT", "/_matrix/client/v3/user/"+esc(devs[0].id)+"/account_data/org.crash.counter", devs[0].token, map[string]int{"n": n})
				if err != nil {
					return
				}
				if code != 200 {
					t.Errorf("account data: %d", code)
					return
				}
				st.mu.Lock()
				st.adAcked, st.adPending = n, 0
				st.mu.Unlock()
			}
		}()
		go func() { // to-device messages to bob, one txn per message
			defer wg.Done()
			for ctx.Err() == nil {
				st.mu.Lock()
				seq := len(st.tdAcked) + 1
				if st.tdPending != 0 {
					seq = st.tdPending
				}
				st.tdPending = seq
				st.mu.Unlock()
				code, _, err := h.do("PUT", fmt.Sprintf("/_matrix/client/v3/sendToDevice/org.crash.td/td%d", seq), devs[1].token,
					map[string]any{"messages": map[string]any{bob.id: map[string]any{bob.device: map[string]int{"seq": seq}}}})
				if err != nil {
					return
				}
				if code != 200 {
					t.Errorf("to-device: %d", code)
					return
				}
				st.mu.Lock()
				st.tdAcked[seq], st.tdPending = true, 0
				st.mu.Unlock()
			}
		}()
		go func() { // read receipts on the latest acknowledged message
			defer wg.Done()
			for ctx.Err() == nil {
				st.mu.Lock()
				var ev string
				if len(st.order) > 0 {
					ev = st.order[len(st.order)-1]
				}
				st.mu.Unlock()
				if ev == "" {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				st.mu.Lock()
				st.rcPending = ev
				st.mu.Unlock()
				code, _, err := h.do("POST", fmt.Sprintf("/_matrix/client/v3/rooms/%s/receipt/m.read/%s", esc(roomID), esc(ev)), devs[2].token, map[string]any{})
				if err != nil {
					return
				}
				if code != 200 {
					t.Errorf("receipt: %d", code)
					return
				}
				st.mu.Lock()
				st.rcAcked, st.rcPending = ev, ""
				st.mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		}()
		go func() { // a client long-polling /sync: its token is held across the crash
			defer wg.Done()
			for ctx.Err() == nil {
				st.mu.Lock()
				tok, last := st.syncTok, st.syncLast
				st.mu.Unlock()
				code, out, err := h.do("GET", "/_matrix/client/v3/sync?timeout=200&filter="+filter+"&since="+url.QueryEscape(tok), syncer.token, nil)
				if err != nil {
					return
				}
				if code != 200 {
					t.Errorf("sync: %d %v", code, out)
					return
				}
				st.mu.Lock()
				st.syncTok, st.syncLast = out["next_batch"].(string), lastTimelineEvent(out, roomID, last)
				st.mu.Unlock()
			}
		}()

		time.Sleep(time.Duration(rng.IntN(400)+10) * time.Millisecond)
		p.kill(t)
		stop()
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		killed++
		h.checkIntegrity()
		p = h.start()
		if cycle%4 == 3 {
			// Now and then the kill lands during recovery, before any request.
			p.kill(t)
			killed++
			p = h.start()
		}

		// 1. The held token still syncs, and delivers every room event after it.
		all := h.allMessages(syncer.token, roomID)
		after := afterEvent(all, st.syncLast)
		got := h.syncSince(syncer.token, roomID, st.syncTok, st.syncLast, filter)
		if !equal(got, after) {
			t.Fatalf("cycle %d: sync since held token %s gave %d events, /messages has %d after %s", cycle, st.syncTok, len(got), len(after), st.syncLast)
		}
		// 2. Every acknowledged event exactly once in /messages, and in an
		// initial /sync followed by pagination.
		h.checkAll(st, all, "messages", cycle)
		h.checkAll(st, h.initialSyncAndPaginate(devs[3].token, roomID), "sync", cycle)
		// 3. Retried transactions: pending ones resolve (to their committed event
		// if the crash came after the commit), acknowledged ones return the same ID.
		inRoom := map[string]bool{}
		for _, id := range all {
			inRoom[id] = true
		}
		st.mu.Lock()
		pend := st.pending
		st.pending = map[int]string{}
		st.mu.Unlock()
		for i, txn := range pend {
			out := h.must("PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/m.room.message/%s", esc(roomID), txn), devs[i].token,
				map[string]any{"msgtype": "m.text", "body": txn})
			id := out["event_id"].(string)
			st.acked[txn], st.byID[id] = id, txn
			st.order = append(st.order, id)
		}
		for range 5 {
			id := st.order[rng.IntN(len(st.order))]
			txn := st.byID[id]
			var d int
			fmt.Sscanf(txn[strings.Index(txn, "-d")+2:], "%d", &d)
			out := h.must("PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/m.room.message/%s", esc(roomID), txn), devs[d].token,
				map[string]any{"msgtype": "m.text", "body": txn})
			if out["event_id"] != id {
				t.Fatalf("retry of acknowledged txn %s gave %v, want %s", txn, out["event_id"], id)
			}
		}
		// 4. Account data: the acknowledged value, or the one in flight;
		// none while no write was ever acknowledged (a kill before the
		// first one committed).
		code, ad, err := h.do("GET", "/_matrix/client/v3/user/"+esc(devs[0].id)+"/account_data/org.crash.counter", devs[0].token, nil)
		if err != nil {
			t.Fatal(err)
		}
		if code == http.StatusNotFound && st.adAcked == 0 {
			st.adPending = 0
		} else if code != http.StatusOK {
			t.Fatalf("account data: %d %v", code, ad)
		} else if n := int(ad["n"].(float64)); n != st.adAcked && (st.adPending == 0 || n != st.adPending) {
			t.Fatalf("account data counter %d, acknowledged %d (in flight %d)", n, st.adAcked, st.adPending)
		} else {
			st.adAcked, st.adPending = n, 0
		}
		// 5. To-device: retry the one in flight, then bob receives each exactly once.
		if st.tdPending != 0 {
			h.must("PUT", fmt.Sprintf("/_matrix/client/v3/sendToDevice/org.crash.td/td%d", st.tdPending), devs[1].token,
				map[string]any{"messages": map[string]any{bob.id: map[string]any{bob.device: map[string]int{"seq": st.tdPending}}}})
			st.tdAcked[st.tdPending], st.tdPending = true, 0
		}
		bobTok = h.drainToDevice(bob.token, bobTok, tdSeen)
		for seq := range st.tdAcked {
			if tdSeen[seq] != 1 {
				t.Fatalf("to-device seq %d received %d times", seq, tdSeen[seq])
			}
		}
		// 6. The receipt: the acknowledged one or the one in flight.
		if st.rcAcked != "" {
			rc := h.receiptOf(devs[3].token, roomID, devs[0].id)
			if rc != st.rcAcked && rc != st.rcPending {
				t.Fatalf("receipt on %s, acknowledged %s (in flight %q)", rc, st.rcAcked, st.rcPending)
			}
			st.rcAcked, st.rcPending = rc, ""
		}
		// 7. The room still accepts sends.
		txn := fmt.Sprintf("c%d-d0-after", cycle)
		out := h.must("PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/m.room.message/%s", esc(roomID), txn), devs[0].token,
			map[string]any{"msgtype": "m.text", "body": txn})
		id := out["event_id"].(string)
		st.acked[txn], st.byID[id] = id, txn
		st.order = append(st.order, id)
		txnN = len(st.acked)
		if h.bad != nil {
			t.Fatalf("server logged:\n%s", strings.Join(h.bad, "\n"))
		}
	}
	p.kill(t) // the last kill: the database file is checked on its own
	h.checkIntegrity()
	t.Logf("%s: %d SIGKILLs, %d messages acknowledged (plus %d to-device, account data counter %d), no loss, no duplicate; %s",
		backend, killed+1, txnN, len(st.tdAcked), st.adAcked, time.Since(start).Round(time.Millisecond))
}

// checkIntegrity runs SQLite's integrity check on the database file (the
// server is dead). PostgreSQL keeps its own integrity: the checks through
// the restarted server are what test it.
func (h *harness) checkIntegrity() {
	h.t.Helper()
	if h.dsn != "" {
		return
	}
	t := h.t
	db, err := sqlite.Open(context.Background(), filepath.Join(h.dataDir, "conclave.db"))
	if err != nil {
		t.Fatalf("open after kill: %v", err)
	}
	defer db.Close()
	if err := db.IntegrityCheck(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// checkAll asserts every acknowledged message is in ids exactly once, and
// no message body (one per transaction) appears twice.
func (h *harness) checkAll(st *state, ids []string, how string, cycle int) {
	h.t.Helper()
	seen := map[string]int{}
	for _, id := range ids {
		seen[id]++
		if seen[id] > 1 {
			h.t.Fatalf("cycle %d (%s): event %s listed twice", cycle, how, id)
		}
	}
	for txn, id := range st.acked {
		if seen[id] != 1 {
			h.t.Fatalf("cycle %d (%s): acknowledged event %s (txn %s) found %d times among %d", cycle, how, id, txn, seen[id], len(ids))
		}
	}
}

// allMessages pages /messages backwards from the end to the room's start and
// returns the event IDs oldest first; bodies must be unique.
func (h *harness) allMessages(token, roomID string) []string {
	return h.paginate(token, roomID, "", "")
}

func (h *harness) paginate(token, roomID, from, stopAt string) []string {
	h.t.Helper()
	var rev []string
	bodies := map[string]bool{}
	for {
		q := "dir=b&limit=1000"
		if from != "" {
			q += "&from=" + url.QueryEscape(from)
		}
		out := h.must("GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/messages?"+q, token, nil)
		chunk, _ := out["chunk"].([]any)
		for _, e := range chunk {
			ev := e.(map[string]any)
			id := ev["event_id"].(string)
			if id == stopAt {
				return reverse(rev)
			}
			if c, ok := ev["content"].(map[string]any); ok && ev["type"] == "m.room.message" {
				b, _ := c["body"].(string)
				if bodies[b] {
					h.t.Fatalf("message body %q appears twice: a retried transaction was duplicated", b)
				}
				bodies[b] = true
			}
			rev = append(rev, id)
		}
		end, _ := out["end"].(string)
		if len(chunk) == 0 || end == "" {
			return reverse(rev)
		}
		from = end
	}
}

func (h *harness) initialSyncAndPaginate(token, roomID string) []string {
	h.t.Helper()
	filter := url.QueryEscape(`{"room":{"timeline":{"limit":20}}}`)
	out := h.must("GET", "/_matrix/client/v3/sync?filter="+filter, token, nil)
	tl := timeline(out, roomID)
	ids := timelineIDs(tl)
	if prev, _ := tl["prev_batch"].(string); prev != "" && tl["limited"] == true {
		ids = append(h.paginate(token, roomID, prev, ""), ids...)
	}
	return ids
}

// syncSince syncs from a held token and, if the timeline is limited, fills
// the gap with /messages back to the last event the token covered.
func (h *harness) syncSince(token, roomID, since, last, filter string) []string {
	h.t.Helper()
	out := h.must("GET", "/_matrix/client/v3/sync?timeout=0&filter="+filter+"&since="+url.QueryEscape(since), token, nil)
	tl := timeline(out, roomID)
	ids := timelineIDs(tl)
	if prev, _ := tl["prev_batch"].(string); prev != "" && tl["limited"] == true {
		ids = append(h.paginate(token, roomID, prev, last), ids...)
	}
	return ids
}

// drainToDevice syncs bob until no to-device messages remain, counting seqs.
func (h *harness) drainToDevice(token, since string, seen map[int]int) string {
	h.t.Helper()
	for {
		q := "/_matrix/client/v3/sync?timeout=0"
		if since != "" {
			q += "&since=" + url.QueryEscape(since)
		}
		out := h.must("GET", q, token, nil)
		since = out["next_batch"].(string)
		td, _ := out["to_device"].(map[string]any)
		evs, _ := td["events"].([]any)
		if len(evs) == 0 {
			return since
		}
		for _, e := range evs {
			c := e.(map[string]any)["content"].(map[string]any)
			seen[int(c["seq"].(float64))]++
		}
	}
}

func (h *harness) receiptOf(token, roomID, userID string) string {
	h.t.Helper()
	out := h.must("GET", "/_matrix/client/v3/sync?filter="+url.QueryEscape(`{"room":{"timeline":{"limit":1}}}`), token, nil)
	join, _ := out["rooms"].(map[string]any)["join"].(map[string]any)
	r, _ := join[roomID].(map[string]any)
	eph, _ := r["ephemeral"].(map[string]any)
	evs, _ := eph["events"].([]any)
	for _, e := range evs {
		ev := e.(map[string]any)
		if ev["type"] != "m.receipt" {
			continue
		}
		for evID, v := range ev["content"].(map[string]any) {
			if reads, ok := v.(map[string]any)["m.read"].(map[string]any); ok {
				if _, ok := reads[userID]; ok {
					return evID
				}
			}
		}
	}
	return ""
}

func timeline(sync map[string]any, roomID string) map[string]any {
	rooms, _ := sync["rooms"].(map[string]any)
	join, _ := rooms["join"].(map[string]any)
	r, _ := join[roomID].(map[string]any)
	tl, _ := r["timeline"].(map[string]any)
	return tl
}

func timelineIDs(tl map[string]any) []string {
	evs, _ := tl["events"].([]any)
	ids := make([]string, 0, len(evs))
	for _, e := range evs {
		ids = append(ids, e.(map[string]any)["event_id"].(string))
	}
	return ids
}

// lastTimelineEvent is the newest room event a sync response covered, or
// prev if its timeline for the room is empty.
func lastTimelineEvent(sync map[string]any, roomID, prev string) string {
	ids := timelineIDs(timeline(sync, roomID))
	if len(ids) == 0 {
		return prev
	}
	return ids[len(ids)-1]
}

func afterEvent(all []string, last string) []string {
	for i, id := range all {
		if id == last {
			return all[i+1:]
		}
	}
	return all
}

func reverse(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
