package hostile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"conclave/internal/homeserver/hstest"
	"conclave/internal/store/storetest/pgtest"
)

// unknownRoomRequests are the requests a logged-in user can aim at any room
// ID; each must leave nothing behind in the server's memory when the room
// does not exist (issue 17, "Unbounded memory").
var unknownRoomRequests = []struct {
	method, path string
	body         string
}{
	{"POST", "/rooms/%s/leave", `{}`},
	{"POST", "/join/%s", `{}`},
	{"POST", "/rooms/%s/join", `{}`},
	{"GET", "/rooms/%s/state", ``},
	{"GET", "/rooms/%s/state/m.room.name/", ``},
	{"PUT", "/rooms/%s/state/m.room.topic/", `{"topic":"t"}`},
	{"GET", "/rooms/%s/messages?dir=b&limit=5", ``},
	{"PUT", "/rooms/%s/send/m.room.message/t%d", `{"msgtype":"m.text","body":"x"}`},
	{"GET", "/rooms/%s/members", ``},
	{"GET", "/rooms/%s/joined_members", ``},
	{"PUT", "/rooms/%s/typing/%u", `{"typing":true,"timeout":30000}`},
	{"POST", "/rooms/%s/receipt/m.read/$e", `{}`},
	{"POST", "/rooms/%s/read_markers", `{"m.fully_read":"$e","m.read":"$e"}`},
	{"POST", "/rooms/%s/invite", `{"user_id":"@nobody:localhost"}`},
	{"POST", "/rooms/%s/kick", `{"user_id":"@nobody:localhost"}`},
	{"PUT", "/rooms/%s/redact/$e/t%d", `{}`},
	{"GET", "/rooms/%s/event/$e", ``},
	{"GET", "/rooms/%s/context/$e", ``},
	{"GET", "/rooms/%s/relations/$e", ``},
	{"POST", "/rooms/%s/upgrade", `{"new_version":"11"}`},
}

// A logged-in user who touches 100,000 room IDs that do not exist, through
// every room endpoint, leaves the server's memory where it was: the room
// service keeps nothing for a room the store does not have. Measured from
// outside on a real `conclave serve`: its resident set (VmRSS) after a
// warm-up, then after the 100,000 IDs. The process runs with GOGC=25 so
// that its heap, and with it RSS, follows live memory closely.
func TestUnknownRoomsLeaveMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a real server")
	}
	bin := hstest.BuildBinary(t)
	args := []string{"serve",
		"--server-name", "localhost", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0",
		"--enable-registration", "--rate-limits=false", "--password-hash-memory-kib", "64",
		"--log-format", "json", "--log-level", "info", "--shutdown-timeout", "1s"}
	if os.Getenv(hstest.EnvDatabase) == "postgres" {
		args = append(args, "--database", pgtest.NewDatabase(t))
	}
	proc := hstest.StartProcess(t, bin, []string{"GOGC=25"}, args...)
	base := proc.URL + "/_matrix/client/v3"
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	do := func(method, path, token, body string) (int, []byte) {
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequest(method, base+path, rd)
		if err != nil {
			t.Error(err)
			return 0, nil
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Error(err)
			return 0, nil
		}
		defer res.Body.Close()
		data, _ := io.ReadAll(res.Body)
		return res.StatusCode, data
	}
	st, data := do("POST", "/register", "", `{"username":"mallory","password":"mallory-pw","auth":{"type":"m.login.dummy"}}`)
	var reg struct {
		UserID      string `json:"user_id"`
		AccessToken string `json:"access_token"`
	}
	if st != 200 || json.Unmarshal(data, &reg) != nil {
		t.Fatalf("register: %d %s", st, data)
	}
	// A real room too, so that the server has one in use throughout.
	if st, data := do("POST", "/createRoom", reg.AccessToken, `{"preset":"public_chat"}`); st != 200 {
		t.Fatalf("createRoom: %d %s", st, data)
	}

	// touch sends one request per room ID in [from, to), rotating through
	// the endpoints, from 8 concurrent clients.
	touch := func(from, to int) {
		var next atomic.Int64
		next.Store(int64(from))
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1) - 1)
					if i >= to || t.Failed() {
						return
					}
					rq := unknownRoomRequests[i%len(unknownRoomRequests)]
					roomID := url.PathEscape(fmt.Sprintf("!unknown%07d:localhost", i))
					path := strings.NewReplacer("%s", roomID, "%d", strconv.Itoa(i), "%u", url.PathEscape(reg.UserID)).Replace(rq.path)
					st, data := do(rq.method, path, reg.AccessToken, rq.body)
					if st >= 500 || st == 200 || st == 0 {
						t.Errorf("%s %s: %d %s", rq.method, path, st, data)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	const warmup, n = 20_000, 100_000
	start := time.Now()
	touch(0, warmup)
	before := settledRSS(t, proc.Cmd.Process.Pid)
	touch(warmup, warmup+n)
	after := settledRSS(t, proc.Cmd.Process.Pid)
	if bad := proc.BadLines(); len(bad) > 0 {
		t.Fatalf("server log: %s", bad[0])
	}
	t.Logf("VmRSS %d kB after %d warm-up requests, %d kB after %d more unknown room IDs (%s)",
		before, warmup, after, n, time.Since(start).Round(time.Millisecond))
	// With an entry per room ID the growth was about 7.8 MB; without, it
	// is 0.7 MB, and the next 100,000 add 0.15 MB (caches and pools reaching
	// their working size).
	if after-before > 3072 {
		t.Fatalf("RSS grew by %d kB over %d unknown room IDs", after-before, n)
	}
}

// settledRSS reads the idle process's VmRSS a few times and returns the
// lowest reading.
func settledRSS(t *testing.T, pid int) int64 {
	t.Helper()
	lowest := int64(-1)
	for range 5 {
		time.Sleep(100 * time.Millisecond)
		v := vmRSS(t, pid)
		if lowest < 0 || v < lowest {
			lowest = v
		}
	}
	return lowest
}

func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		if rest, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(string(rest)), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb
		}
	}
	t.Fatal("no VmRSS")
	return 0
}
