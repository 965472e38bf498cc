package contentscan

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"conclave/internal/clamd"
	"conclave/internal/clamd/clamdtest"
	"conclave/internal/media"
	"conclave/internal/store/sqlite"
)

// heldScanner is the real clamd behind a barrier: each scan announces
// itself on entered and waits for release before streaming. It orders the
// interleavings below without sleeps.
type heldScanner struct {
	c       *clamd.Client
	entered chan struct{}
	release chan struct{}
}

func (h *heldScanner) Scan(ctx context.Context, r io.Reader) (clamd.Result, error) {
	h.entered <- struct{}{}
	<-h.release
	return h.c.Scan(ctx, r)
}

func newTestService(t *testing.T) (*Service, *media.Service, *heldScanner) {
	t.Helper()
	d := clamdtest.Start(t)
	c, err := clamd.Parse(d.Unix)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "media.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	fs, err := media.NewFileStorage(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	ms := media.New(db, fs, media.Options{ServerName: "hs", MaxUploadBytes: 1 << 20})
	held := &heldScanner{c: c, entered: make(chan struct{}, 16), release: make(chan struct{})}
	return New(Options{Media: ms, Scanner: held, Key: testKey(t, 3)}), ms, held
}

func uploadPlain(t *testing.T, ms *media.Service, data string) media.Request {
	t.Helper()
	mxc, err := ms.Upload(context.Background(), "@u:hs", media.Upload{Body: strings.NewReader(data), ContentLength: int64(len(data)), ContentType: "application/octet-stream"})
	if err != nil {
		t.Fatal(err)
	}
	return media.Request{ServerName: "hs", MediaID: strings.TrimPrefix(mxc, "mxc://hs/")}
}

// Requests for one file while it is being scanned wait for that scan
// instead of starting their own, and all get its verdict; one that gives
// up leaves the scan running for the others.
func TestConcurrentRequestsShareOneScan(t *testing.T) {
	s, ms, held := newTestService(t)
	req := uploadPlain(t, ms, "padding "+string(clamdtest.EICAR()))
	joined := make(chan struct{}, 16)
	s.hookJoined = func(string) { joined <- struct{}{} }

	const n = 4
	var wg sync.WaitGroup
	verdicts := make([]Verdict, n)
	errs := make([]error, n)
	wg.Add(1)
	go func() { defer wg.Done(); verdicts[0], errs[0] = s.Scan(context.Background(), req, nil) }()
	<-held.entered // the first request's scan is under way
	for i := 1; i < n; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); verdicts[i], errs[i] = s.Scan(context.Background(), req, nil) }()
		<-joined
	}
	// One more joins and gives up.
	ctx, cancel := context.WithCancel(context.Background())
	quit := make(chan error)
	go func() { _, err := s.Scan(ctx, req, nil); quit <- err }()
	<-joined
	cancel()
	if err := <-quit; !errors.Is(err, context.Canceled) {
		t.Fatalf("the request that gave up: %v", err)
	}
	close(held.release)
	wg.Wait()
	for i := range n {
		if errs[i] != nil || verdicts[i].Clean {
			t.Fatalf("request %d: %+v %v", i, verdicts[i], errs[i])
		}
	}
	if got := s.Scans(); got != 1 {
		t.Fatalf("%d scans, want 1", got)
	}
	// Later requests use the cached verdict.
	if v, err := s.Scan(context.Background(), req, nil); err != nil || v.Clean || s.Scans() != 1 {
		t.Fatalf("cached: %+v %v, %d scans", v, err, s.Scans())
	}
}

// Past the bound on scans in progress, a request for another file is
// refused at once (429) rather than queued without limit.
func TestPendingScansAreBounded(t *testing.T) {
	s, ms, held := newTestService(t)
	s.maxPending = 1
	a, b := uploadPlain(t, ms, "file a"), uploadPlain(t, ms, "file b")
	done := make(chan error)
	go func() { _, err := s.Scan(context.Background(), a, nil); done <- err }()
	<-held.entered
	_, err := s.Scan(context.Background(), b, nil)
	var e *Error
	if !errors.As(err, &e) || e.Status != 429 || e.Reason != "M_LIMIT_EXCEEDED" {
		t.Fatalf("over the bound: %v", err)
	}
	close(held.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if v, err := s.Scan(context.Background(), b, nil); err != nil || !v.Clean {
		t.Fatalf("after the first ended: %+v %v", v, err)
	}
}

// A request that joined a scan whose first request gave up while waiting
// for a turn at clamd does not inherit that cancellation: it scans itself.
func TestJoinerOutlivesALeaderThatGaveUp(t *testing.T) {
	s, ms, held := newTestService(t)
	s.sem = make(chan struct{}, 1) // one stream to clamd at a time
	a, b := uploadPlain(t, ms, "file a"), uploadPlain(t, ms, "padding "+string(clamdtest.EICAR()))
	joined := make(chan struct{}, 4)
	s.hookJoined = func(string) { joined <- struct{}{} }

	doneA := make(chan error)
	go func() { _, err := s.Scan(context.Background(), a, nil); doneA <- err }()
	<-held.entered // a holds clamd
	leading := make(chan struct{}, 4)
	s.hookLeading = func(string) { leading <- struct{}{} }
	ctx, cancel := context.WithCancel(context.Background())
	leader := make(chan error)
	go func() { _, err := s.Scan(ctx, b, nil); leader <- err }()
	<-leading // it waits for its turn at clamd
	type result struct {
		v   Verdict
		err error
	}
	joiner := make(chan result)
	go func() { v, err := s.Scan(context.Background(), b, nil); joiner <- result{v, err} }()
	<-joined // the second request for b waits on the first's scan
	cancel()
	if err := <-leader; !errors.Is(err, context.Canceled) {
		t.Fatalf("the request that gave up: %v", err)
	}
	close(held.release)
	if err := <-doneA; err != nil {
		t.Fatal(err)
	}
	if r := <-joiner; r.err != nil || r.v.Clean {
		t.Fatalf("the joiner: %+v %v", r.v, r.err)
	}
}
