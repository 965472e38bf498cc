package clustertest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"conclave/internal/homeserver/hstest"
	"conclave/internal/store/storetest/pgtest"
)

// slidingSync posts a simplified sliding sync request to p.
func (p *proc) slidingSync(t *testing.T, token, pos string, timeoutMS int, body any) (int, map[string]any) {
	t.Helper()
	path := p.url + "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync?timeout=" + itoa(timeoutMS)
	if pos != "" {
		path += "&pos=" + pos
	}
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	var m map[string]any
	json.Unmarshal(data, &m)
	return res.StatusCode, m
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestSlidingSyncAcrossProcesses: a sliding sync connection's positions work
// on either process (no sticky sessions), and a long-poll on one is woken by
// a message sent through the other.
func TestSlidingSyncAcrossProcesses(t *testing.T) {
	if os.Getenv(hstest.EnvDatabase) != "postgres" {
		t.Skipf("needs %s=postgres (the PostgreSQL pass of make test)", hstest.EnvDatabase)
	}
	dsn := pgtest.NewDatabase(t)
	bin := hstest.BuildBinary(t)
	a := start(t, bin, dsn, t.TempDir())
	b := start(t, bin, dsn, t.TempDir())
	alice := a.register(t, "alice")
	bob := b.register(t, "bob")
	roomID := a.must(t, "POST", "/createRoom", alice, map[string]any{"preset": "public_chat"})["room_id"].(string)
	body := map[string]any{"conn_id": "room-list", "lists": map[string]any{"all": map[string]any{
		"ranges": [][]int{{0, 9}}, "timeline_limit": 5, "required_state": [][]string{{"m.room.member", "$LAZY"}}}}}
	st, r1 := a.slidingSync(t, alice, "", 0, body)
	if st != 200 || r1["rooms"].(map[string]any)[roomID] == nil {
		t.Fatalf("first on A: %d %v", st, r1)
	}
	b.must(t, "POST", "/join/"+esc(roomID), bob, map[string]any{})
	// On B, from A's position: the join, as soon as B has heard it.
	var r2 map[string]any
	for i := 0; ; i++ {
		st, r2 = b.slidingSync(t, alice, r1["pos"].(string), 5000, body)
		if st != 200 {
			t.Fatalf("A's position on B: %d %v", st, r2)
		}
		if r2["rooms"].(map[string]any)[roomID] != nil {
			break
		}
		if i == 20 {
			t.Fatalf("B never showed the join: %v", r2)
		}
	}
	// A long-poll on A, from B's position, woken by bob's message through B.
	done := make(chan map[string]any, 1)
	go func() {
		_, m := a.slidingSync(t, alice, r2["pos"].(string), 30000, body)
		done <- m
	}()
	b.must(t, "PUT", "/rooms/"+esc(roomID)+"/send/m.room.message/x1", bob, map[string]any{"msgtype": "m.text", "body": "across"})
	var r3 map[string]any
	select {
	case r3 = <-done:
	case <-time.After(40 * time.Second):
		t.Fatal("the long-poll on A never returned")
	}
	room, _ := r3["rooms"].(map[string]any)[roomID].(map[string]any)
	tl, _ := room["timeline"].([]any)
	if len(tl) == 0 || tl[len(tl)-1].(map[string]any)["content"].(map[string]any)["body"] != "across" {
		t.Fatalf("woken on A: %v", r3)
	}
}
