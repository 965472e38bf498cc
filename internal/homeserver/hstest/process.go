package hstest

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// Process is a real conclave process (BuildBinary) started by StartProcess.
type Process struct {
	Cmd  *exec.Cmd
	URL  string        // http://127.0.0.1:port
	Done chan struct{} // closed once its log is read to the end (it exited)
	mu   sync.Mutex
	bad  []string // panics and internal errors in its log
}

// StartProcess runs bin with args — a `serve` logging JSON at info level or
// more, listening on one client address — with env added to the test's
// environment, and returns once it listens. It is killed when the test ends,
// and every panic or internal error it logged fails the test then.
func StartProcess(t testing.TB, bin string, env []string, args ...string) *Process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	p := &Process{Cmd: cmd, Done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		defer close(p.Done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) != nil {
				continue
			}
			switch line.Msg {
			case "listening":
				select {
				case addr <- line.Addr:
				default:
				}
			case "panic", "internal error":
				p.mu.Lock()
				p.bad = append(p.bad, sc.Text())
				p.mu.Unlock()
			}
		}
	}()
	select {
	case a := <-addr:
		p.URL = "http://" + a
	case <-p.Done:
		t.Fatal("server exited before listening")
	case <-time.After(60 * time.Second):
		t.Fatal("server did not listen within 60s")
	}
	t.Cleanup(func() {
		for _, l := range p.BadLines() {
			t.Errorf("server log: %s", l)
		}
	})
	return p
}

// BadLines are the panics and internal errors the process logged so far.
func (p *Process) BadLines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.bad...)
}
