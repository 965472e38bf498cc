package clustertest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"conclave/internal/homeserver/hstest"
	"conclave/internal/store/storetest/pgtest"
)

// raw sends a request with a raw body to a process; err is a transport
// error (the process is gone).
func raw(base, method, path, token string, body []byte, ctype string) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	res, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	return res.StatusCode, data, err
}

// Two processes share one database and one media directory
// (docs/deployment.md). Clients upload through both, some content many
// times over (stored once), an admin deletes some of those uploads through
// the other process, and one process is restarted again and again (killed
// or stopped) while the other keeps taking uploads: its start must neither
// remove the other's uploads in flight nor let its orphan cleanup delete a
// file whose row the other is committing. Every upload acknowledged and not
// deleted must be downloadable afterwards, through both, byte for byte; no
// upload may fail on the process that stays up.
func TestTwoProcessesShareMedia(t *testing.T) {
	if os.Getenv(hstest.EnvDatabase) != "postgres" {
		t.Skipf("needs %s=postgres (the PostgreSQL pass of make test)", hstest.EnvDatabase)
	}
	dsn := pgtest.NewDatabase(t)
	bin := hstest.BuildBinary(t)
	mediaDir := t.TempDir()
	dirA, dirB := t.TempDir(), t.TempDir()
	a := start(t, bin, dsn, dirA, "--media-dir", mediaDir)
	b := start(t, bin, dsn, dirB, "--media-dir", mediaDir)

	alice := a.register(t, "alice")
	admin := b.register(t, "admin")
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `UPDATE users SET is_admin = true WHERE user_id = '@admin:localhost'`); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)

	// An asynchronous upload completed through A wakes a download waiting
	// on B (B reads the row again; A's wake-up is in A's memory only).
	var created struct {
		ContentURI string `json:"content_uri"`
	}
	st, body, err := raw(a.url, "POST", "/_matrix/media/v1/create", alice, nil, "")
	if err != nil || st != 200 || json.Unmarshal(body, &created) != nil {
		t.Fatalf("create through A: %d %s %v", st, body, err)
	}
	pending := strings.TrimPrefix(created.ContentURI, "mxc://localhost/")
	waited := make(chan string, 1)
	go func() {
		st, body, err := raw(b.url, "GET", "/_matrix/client/v1/media/download/localhost/"+pending+"?timeout_ms=30000", alice, nil, "")
		waited <- fmt.Sprintf("%d %s %v", st, body, err)
	}()
	time.Sleep(200 * time.Millisecond) // usually lets the download start waiting; the check holds either way
	if st, body, err := raw(a.url, "PUT", "/_matrix/media/v3/upload/localhost/"+pending, alice, []byte("late content"), "text/plain"); err != nil || st != 200 {
		t.Fatalf("PUT through A: %d %s %v", st, body, err)
	}
	select {
	case got := <-waited:
		if got != "200 late content <nil>" {
			t.Fatalf("download waiting on B: %s", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the download waiting on B was not served within 10 s of the upload through A")
	}

	// B's address changes with each restart.
	var mu sync.Mutex
	procs := []*proc{a, b}
	url := func(i int) string { mu.Lock(); defer mu.Unlock(); return procs[i].url }

	shared := make([][]byte, 4)
	for i := range shared {
		shared[i] = bytes.Repeat([]byte(fmt.Sprintf("shared content %d ", i)), 3000)
	}
	type upload struct {
		data []byte
		via  int
	}
	var umu sync.Mutex
	acked := map[string]upload{} // media ID → content
	deleted := map[string]bool{}
	var sharedIDs []string
	failedOnA := 0

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for pi := 0; pi < 2; pi++ {
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(pi), uint64(g)))
				for n := 0; ; n++ {
					select {
					case <-stop:
						return
					default:
					}
					var data []byte
					isShared := rng.IntN(2) == 0
					if isShared {
						data = shared[rng.IntN(len(shared))]
					} else {
						data = bytes.Repeat([]byte(fmt.Sprintf("unique %d-%d-%d ", pi, g, n)), 2000+rng.IntN(2000))
					}
					st, body, err := raw(url(pi), "POST", "/_matrix/media/v3/upload", alice, data, "application/octet-stream")
					if err != nil || st != 200 {
						if pi == 0 {
							umu.Lock()
							failedOnA++
							umu.Unlock()
							t.Errorf("upload through A (which stays up): %d %s %v", st, body, err)
							return
						}
						time.Sleep(10 * time.Millisecond) // B is restarting
						continue
					}
					var uri string
					if _, after, ok := strings.Cut(string(body), `"content_uri":"mxc://localhost/`); ok {
						uri, _, _ = strings.Cut(after, `"`)
					}
					if uri == "" {
						t.Errorf("upload answer without a content URI: %s", body)
						return
					}
					umu.Lock()
					acked[uri] = upload{data, pi}
					if isShared {
						sharedIDs = append(sharedIDs, uri)
					}
					umu.Unlock()
				}
			}()
		}
	}
	// The admin deletes some uploads of shared content (the same content
	// keeps being uploaded) through either process.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			umu.Lock()
			if len(sharedIDs) == 0 {
				umu.Unlock()
				continue
			}
			id := sharedIDs[0]
			sharedIDs = sharedIDs[1:]
			umu.Unlock()
			st, body, err := raw(url(n%2), "DELETE", "/_synapse/admin/v1/media/localhost/"+id, admin, nil, "")
			if err != nil || st == 200 {
				// Deleted, or perhaps (B died with the answer): not checked.
				umu.Lock()
				deleted[id] = true
				umu.Unlock()
			} else {
				t.Errorf("delete %s: %d %s", id, st, body)
			}
		}
	}()

	const restarts = 8
	for r := 0; r < restarts; r++ {
		time.Sleep(300 * time.Millisecond)
		mu.Lock()
		old := procs[1]
		mu.Unlock()
		if r%2 == 0 {
			old.Cmd.Process.Kill()
		} else {
			old.Cmd.Process.Signal(syscall.SIGTERM)
		}
		old.Cmd.Wait()
		<-old.Done
		nb := start(t, bin, dsn, dirB, "--media-dir", mediaDir)
		mu.Lock()
		procs[1] = nb
		mu.Unlock()
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	if t.Failed() {
		return
	}

	umu.Lock()
	defer umu.Unlock()
	checked := 0
	for id, u := range acked {
		if deleted[id] {
			continue
		}
		for pi := 0; pi < 2; pi++ {
			st, body, err := raw(url(pi), "GET", "/_matrix/client/v1/media/download/localhost/"+id, alice, nil, "")
			if err != nil || st != 200 || !bytes.Equal(body, u.data) {
				t.Fatalf("acknowledged upload %s (through %c) downloaded through %c: %d, %d bytes (want %d), %v",
					id, "AB"[u.via], "AB"[pi], st, len(body), len(u.data), err)
			}
		}
		checked++
	}
	// Nothing of a process that is gone stays in the staging area.
	var staged []string
	filepath.Walk(filepath.Join(mediaDir, "staging"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && !strings.HasSuffix(p, ".lock") {
			staged = append(staged, p)
		}
		return nil
	})
	t.Logf("%d uploads acknowledged (%d deleted), %d checked through both processes, %d restarts of B; %d staging files in flight at the end",
		len(acked), len(deleted), checked, restarts, len(staged))
}
