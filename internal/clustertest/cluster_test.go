// Package clustertest runs two real conclave processes on one PostgreSQL
// database, as a deployment behind a load balancer without sticky sessions
// would (docs/deployment.md): messages, /sync wake-ups and typing cross
// processes, and concurrent sends through both into one room form a single
// linear history. It runs in the PostgreSQL pass of make test
// (CONCLAVE_TEST_DATABASE=postgres) and skips otherwise.
package clustertest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"conclave/internal/homeserver/hstest"
	"conclave/internal/store/storetest/pgtest"
)

var client = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}

type proc struct {
	*hstest.Process
	url string
}

// start runs one conclave process on dsn with its own data directory (and
// extra flags) and returns once it listens; it is killed when the test ends.
func start(t *testing.T, bin, dsn, dataDir string, extra ...string) *proc {
	t.Helper()
	args := append([]string{"serve",
		"--server-name", "localhost", "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--database", dsn,
		"--enable-registration", "--rate-limits=false", "--password-hash-memory-kib", "64",
		"--log-format", "json", "--log-level", "info", "--shutdown-timeout", "1s"}, extra...)
	p := hstest.StartProcess(t, bin, nil, args...)
	return &proc{Process: p, url: p.URL}
}

func (p *proc) do(method, path, token string, body any) (int, map[string]any, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, p.url+"/_matrix/client/v3"+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		return 0, nil, err
	}
	var m map[string]any
	json.Unmarshal(data, &m)
	return res.StatusCode, m, nil
}

func (p *proc) must(t *testing.T, method, path, token string, body any) map[string]any {
	t.Helper()
	st, m, err := p.do(method, path, token, body)
	if err != nil || st != 200 {
		t.Fatalf("%s %s: %d %v %v", method, path, st, m, err)
	}
	return m
}

func esc(s string) string { return url.PathEscape(s) }

// register makes a user through one process and returns its access token.
func (p *proc) register(t *testing.T, name string) string {
	t.Helper()
	m := p.must(t, "POST", "/register", "", map[string]any{"username": name, "password": "cluster-pw-" + name,
		"auth": map[string]string{"type": "m.login.dummy"}})
	return m["access_token"].(string)
}

// syncUntil long-polls through p from since (30 s timeout) and returns the
// response; the caller checks it carries what it waited for.
func (p *proc) sync(t *testing.T, token, since string) map[string]any {
	t.Helper()
	return p.must(t, "GET", "/sync?timeout=30000&since="+url.QueryEscape(since), token, nil)
}

func roomTimeline(resp map[string]any, roomID string) []any {
	rooms, _ := resp["rooms"].(map[string]any)
	join, _ := rooms["join"].(map[string]any)
	r, _ := join[roomID].(map[string]any)
	tl, _ := r["timeline"].(map[string]any)
	evs, _ := tl["events"].([]any)
	return evs
}

func roomEphemeral(resp map[string]any, roomID string) []any {
	rooms, _ := resp["rooms"].(map[string]any)
	join, _ := rooms["join"].(map[string]any)
	r, _ := join[roomID].(map[string]any)
	ep, _ := r["ephemeral"].(map[string]any)
	evs, _ := ep["events"].([]any)
	return evs
}

func TestTwoProcessesOneDatabase(t *testing.T) {
	if os.Getenv(hstest.EnvDatabase) != "postgres" {
		t.Skipf("needs %s=postgres (the PostgreSQL pass of make test)", hstest.EnvDatabase)
	}
	dsn := pgtest.NewDatabase(t)
	bin := hstest.BuildBinary(t)
	dirA, dirB := t.TempDir(), t.TempDir()
	a := start(t, bin, dsn, dirA)
	b := start(t, bin, dsn, dirB)

	// One signing key, in the database, for both processes.
	for _, d := range []string{dirA, dirB} {
		if _, err := os.Stat(filepath.Join(d, "signing.key")); err == nil {
			t.Errorf("%s has a signing.key file; the key belongs in the database", d)
		}
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	var keys int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM server_signing_key`).Scan(&keys); err != nil || keys != 1 {
		t.Errorf("signing keys in the database: %d, %v", keys, err)
	}
	conn.Close(ctx)

	alice := a.register(t, "alice")
	bob := b.register(t, "bob")
	roomID := a.must(t, "POST", "/createRoom", alice, map[string]any{"preset": "public_chat"})["room_id"].(string)
	b.must(t, "POST", "/join/"+esc(roomID), bob, map[string]any{})
	// Tokens and state cross processes: bob's token works on A, and A's view
	// of the room shows the join made through B once B's notification has
	// arrived (a few milliseconds: reads elsewhere are eventually consistent).
	for i := 0; ; i++ {
		st, m, err := a.do("GET", "/rooms/"+esc(roomID)+"/state/m.room.member/"+esc("@bob:localhost"), bob, nil)
		if err == nil && st == 200 {
			break
		}
		if i == 100 {
			t.Fatalf("A never saw the join through B: %d %v %v", st, m, err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	since := a.must(t, "GET", "/sync", alice, nil)["next_batch"].(string)

	// A long-poll on A wakes for a message sent through B.
	type result struct {
		resp map[string]any
		took time.Duration
	}
	woke := make(chan result, 1)
	go func() {
		t0 := time.Now()
		woke <- result{a.sync(t, alice, since), time.Since(t0)}
	}()
	time.Sleep(300 * time.Millisecond) // let the long-poll start; the check below holds either way
	sent := b.must(t, "PUT", "/rooms/"+esc(roomID)+"/send/m.room.message/b1", bob, map[string]any{"msgtype": "m.text", "body": "hello from B"})["event_id"].(string)
	r := <-woke
	found := false
	for _, ev := range roomTimeline(r.resp, roomID) {
		if ev.(map[string]any)["event_id"] == sent {
			found = true
		}
	}
	if !found {
		t.Fatalf("long-poll on A returned after %v without the message sent through B: %v", r.took, r.resp)
	}
	t.Logf("long-poll on A woke %v after it started", r.took)
	since = r.resp["next_batch"].(string)

	// Typing through B reaches a long-poll on A.
	go func() { woke <- result{a.sync(t, alice, since), 0} }()
	time.Sleep(300 * time.Millisecond)
	b.must(t, "PUT", "/rooms/"+esc(roomID)+"/typing/"+esc("@bob:localhost"), bob, map[string]any{"typing": true, "timeout": 30000})
	r = <-woke
	typing := false
	for _, ev := range roomEphemeral(r.resp, roomID) {
		e := ev.(map[string]any)
		if e["type"] == "m.typing" && strings.Contains(fmt.Sprint(e["content"]), "@bob:localhost") {
			typing = true
		}
	}
	if !typing {
		t.Fatalf("typing through B not in the sync on A: %v", r.resp)
	}
	// A token from A means the same on B: B reports no typing change since,
	// and hands back a token B understands (no sticky sessions).
	tok := r.resp["next_batch"].(string)
	rb := b.must(t, "GET", "/sync?timeout=0&since="+url.QueryEscape(tok), alice, nil)
	if evs := roomEphemeral(rb, roomID); len(evs) != 0 {
		t.Errorf("B re-sent ephemeral events already seen through A: %v", evs)
	}
	b.must(t, "PUT", "/rooms/"+esc(roomID)+"/typing/"+esc("@bob:localhost"), bob, map[string]any{"typing": false})

	// User-interactive auth across processes: the challenge from A, the
	// answer to B.
	dev := a.must(t, "POST", "/login", "", map[string]any{"type": "m.login.password",
		"identifier": map[string]string{"type": "m.id.user", "user": "alice"}, "password": "cluster-pw-alice"})["device_id"].(string)
	st, ch, err := a.do("DELETE", "/devices/"+esc(dev), alice, map[string]any{})
	session, _ := ch["session"].(string)
	if err != nil || st != 401 || session == "" {
		t.Fatalf("UIA challenge: %d %v %v", st, ch, err)
	}
	b.must(t, "DELETE", "/devices/"+esc(dev), alice, map[string]any{"auth": map[string]any{"type": "m.login.password", "session": session,
		"identifier": map[string]string{"type": "m.id.user", "user": "alice"}, "password": "cluster-pw-alice"}})

	// Concurrent sends into the room through both processes.
	const perProc, each = 4, 50
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ids []string
	for pi, p := range []*proc{a, b} {
		token := alice
		if pi == 1 {
			token = bob
		}
		for g := 0; g < perProc; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					txn := fmt.Sprintf("c%d-%d-%d", pi, g, i)
					st, m, err := p.do("PUT", "/rooms/"+esc(roomID)+"/send/m.room.message/"+txn, token, map[string]any{"msgtype": "m.text", "body": txn})
					if err != nil || st != 200 {
						t.Errorf("send %s: %d %v %v", txn, st, m, err)
						return
					}
					mu.Lock()
					ids = append(ids, m["event_id"].(string))
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if len(ids) != 2*perProc*each {
		t.Fatalf("%d sends acknowledged, want %d", len(ids), 2*perProc*each)
	}

	// /messages (through either process) shows one linear history.
	var timeline []map[string]any
	from := ""
	for page := 0; page < 100; page++ {
		path := "/rooms/" + esc(roomID) + "/messages?dir=b&limit=100"
		if from != "" {
			path += "&from=" + url.QueryEscape(from)
		}
		m := []*proc{a, b}[page%2].must(t, "GET", path, alice, nil)
		chunk, _ := m["chunk"].([]any)
		for _, ev := range chunk {
			timeline = append(timeline, ev.(map[string]any))
		}
		end, _ := m["end"].(string)
		if end == "" || len(chunk) == 0 {
			break
		}
		from = end
	}
	// Oldest first.
	for i, j := 0, len(timeline)-1; i < j; i, j = i+1, j-1 {
		timeline[i], timeline[j] = timeline[j], timeline[i]
	}
	seen := map[string]bool{}
	for _, ev := range timeline {
		id := ev["event_id"].(string)
		if seen[id] {
			t.Fatalf("event %s twice in /messages", id)
		}
		seen[id] = true
	}
	for _, id := range ids {
		if !seen[id] {
			t.Fatalf("acknowledged event %s missing from /messages", id)
		}
	}
	// prev_events are not in client events: read the PDUs from the database.
	conn, err = pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT event_id, json FROM events WHERE room_id = $1 ORDER BY pos`, roomID)
	if err != nil {
		t.Fatal(err)
	}
	var prev string
	n := 0
	for rows.Next() {
		var id string
		var raw []byte
		if err := rows.Scan(&id, &raw); err != nil {
			t.Fatal(err)
		}
		var pdu struct {
			PrevEvents []string `json:"prev_events"`
		}
		if err := json.Unmarshal(raw, &pdu); err != nil {
			t.Fatal(err)
		}
		if prev != "" && (len(pdu.PrevEvents) != 1 || pdu.PrevEvents[0] != prev) {
			t.Fatalf("fork: %s has prev_events %v, want [%s]", id, pdu.PrevEvents, prev)
		}
		prev = id
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != len(timeline) {
		t.Fatalf("%d events stored, /messages shows %d", n, len(timeline))
	}
	var extremities int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM forward_extremities WHERE room_id = $1`, roomID).Scan(&extremities); err != nil || extremities != 1 {
		t.Fatalf("forward extremities: %d, %v", extremities, err)
	}
}
