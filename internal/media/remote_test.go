package media

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"conclave/internal/matrix"
)

// fakeFetcher serves remote content from a map, after waiting on gate
// (when set); err, when set, is returned instead.
type fakeFetcher struct {
	content map[string]remoteFile
	gate    chan struct{}
	err     error
	calls   chan string
}

type remoteFile struct{ contentType, filename, data string }

func (f *fakeFetcher) FetchMedia(ctx context.Context, origin, mediaID string, wait time.Duration, maxBytes int64, fn func(*Remote) error) error {
	if f.calls != nil {
		f.calls <- origin + "/" + mediaID
	}
	if f.gate != nil {
		<-f.gate
	}
	if f.err != nil {
		return f.err
	}
	r, ok := f.content[mediaID]
	if !ok {
		return matrix.NotFound("Remote media not found")
	}
	return fn(&Remote{ContentType: r.contentType, Filename: r.filename, Length: -1, Body: strings.NewReader(r.data)})
}

func remoteRead(t *testing.T, s *Service, ctx context.Context, id string) (string, *Content, error) {
	t.Helper()
	c, err := s.Download(ctx, Request{ServerName: "other.example", MediaID: id})
	if err != nil {
		return "", nil, err
	}
	defer c.Object.Close()
	b, _ := io.ReadAll(c.Object)
	return string(b), c, nil
}

func wantCode(t *testing.T, err error, status int, code string) {
	t.Helper()
	me, ok := matrix.AsError(err)
	if !ok || me.Status != status || me.Code != code {
		t.Fatalf("error %v, want %d %s", err, status, code)
	}
}

// What another server says of its content is kept only if an upload could
// say it; its failures are 502, its Matrix answers passed on.
func TestRemoteFetchAnswers(t *testing.T) {
	s, _ := twoProcesses(t)
	f := &fakeFetcher{content: map[string]remoteFile{
		"weird": {"not a type", "a\x00b", "weird"},
		"fine":  {"text/plain; charset=utf-8", "ok.txt", "fine"},
	}}
	s.SetFetcher(f)
	ctx := context.Background()
	got, c, err := remoteRead(t, s, ctx, "weird")
	if err != nil || got != "weird" || c.Media.ContentType != "application/octet-stream" || c.Media.Filename != "" || c.Media.Origin != "other.example" {
		t.Fatalf("weird: %q %+v %v", got, c, err)
	}
	if got, c, err = remoteRead(t, s, ctx, "fine"); err != nil || got != "fine" || c.Media.ContentType != "text/plain; charset=utf-8" || c.Media.Filename != "ok.txt" {
		t.Fatalf("fine: %q %+v %v", got, c, err)
	}
	_, _, err = remoteRead(t, s, ctx, "absent")
	wantCode(t, err, http.StatusNotFound, matrix.ErrNotFound)
	f.err = errors.New("connection refused")
	_, _, err = remoteRead(t, s, ctx, "other")
	wantCode(t, err, http.StatusBadGateway, matrix.ErrUnknown)
	// Invalid server names never fetch, nor the legacy endpoint with the
	// legacy freeze on (Synapse's enable_authenticated_media).
	_, err = s.Download(ctx, Request{ServerName: "bad name", MediaID: "x"})
	wantCode(t, err, http.StatusNotFound, matrix.ErrNotFound)
	s.opt.LegacyFreeze = true
	_, err = s.Download(ctx, Request{ServerName: "other.example", MediaID: "fine", Legacy: true})
	wantCode(t, err, http.StatusNotFound, matrix.ErrNotFound)
	s.opt.LegacyFreeze = false
}

// A request that gives up does not fail the others waiting on the same
// fetch, nor the fetch.
func TestRemoteFetchOutlivesItsFirstRequest(t *testing.T) {
	s, _ := twoProcesses(t)
	f := &fakeFetcher{gate: make(chan struct{}), content: map[string]remoteFile{"m": {"text/plain", "", "shared"}}}
	s.SetFetcher(f)
	joined := make(chan int, 2)
	s.OnFetchJoined(func(_ string, n int) { joined <- n })
	first, cancel := context.WithCancel(context.Background())
	firstErr := make(chan error, 1)
	go func() {
		_, _, err := remoteRead(t, s, first, "m")
		firstErr <- err
	}()
	<-joined
	second := make(chan string, 1)
	go func() {
		got, _, err := remoteRead(t, s, context.Background(), "m")
		if err != nil {
			got = err.Error()
		}
		second <- got
	}()
	<-joined
	cancel()
	if err := <-firstErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled request: %v", err)
	}
	close(f.gate)
	if got := <-second; got != "shared" {
		t.Fatalf("the other request: %q", got)
	}
}

// Two processes fetching the same media at once: one row wins, the other
// process serves it, and the shared file stays.
func TestRemoteFetchRacingProcesses(t *testing.T) {
	a, b := twoProcesses(t)
	content := map[string]remoteFile{"m": {"text/plain", "", "raced"}}
	fb := &fakeFetcher{gate: make(chan struct{}), calls: make(chan string, 1), content: content}
	a.SetFetcher(&fakeFetcher{content: content})
	b.SetFetcher(fb)
	ctx := context.Background()
	done := make(chan error, 1)
	go func() {
		got, _, err := remoteRead(t, b, ctx, "m")
		if err == nil && got != "raced" {
			err = errors.New("b read " + got)
		}
		done <- err
	}()
	<-fb.calls // b looked, found nothing, and is fetching
	got, ca, err := remoteRead(t, a, ctx, "m")
	if err != nil || got != "raced" {
		t.Fatalf("a: %q %v", got, err)
	}
	close(fb.gate) // b now stores its copy: conflict, and a's row is served
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	m, err := b.st.GetRemoteMedia(ctx, "other.example", "m")
	if err != nil || m.MediaID != ca.Media.MediaID {
		t.Fatalf("row %+v %v, want a's %s", m, err, ca.Media.MediaID)
	}
	for _, s := range []*Service{a, b} {
		if got, _, err := remoteRead(t, s, ctx, "m"); err != nil || got != "raced" {
			t.Fatalf("after the race: %q %v", got, err)
		}
	}
}
