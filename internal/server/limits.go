package server

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// LimitListener returns a listener that holds at most n connections open at
// once: Accept waits for a slot, so excess clients queue in the kernel
// instead of costing goroutines and file descriptors.
func LimitListener(l net.Listener, n int) net.Listener {
	return &limitListener{Listener: l, sem: make(chan struct{}, n), done: make(chan struct{})}
}

type limitListener struct {
	net.Listener
	sem       chan struct{}
	closeOnce sync.Once
	done      chan struct{}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

func (l *limitListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.done) })
	return err
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// WithDeadline gives every request a context deadline of d, so a handler
// stuck on the database or a lock gives up instead of holding its
// connection forever. Long-polls (paths for which longPoll is true) get
// extra on top.
func WithDeadline(next http.Handler, d, extra time.Duration, longPoll func(path string) bool) http.Handler {
	if d <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit := d
		if longPoll != nil && longPoll(r.URL.Path) {
			limit += extra
		}
		ctx, cancel := context.WithTimeout(r.Context(), limit)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// IsSlow reports whether path may legitimately take long: /sync (a
// long-poll, capped on its own) and media (large uploads and downloads, and
// the content scanner's fetches and scans of them).
func IsSlow(path string) bool {
	return strings.HasPrefix(path, "/_matrix/client/") && strings.HasSuffix(path, "/sync") ||
		strings.HasPrefix(path, "/_matrix/media/") || strings.HasPrefix(path, "/_matrix/client/v1/media/") ||
		strings.HasPrefix(path, "/_matrix/media_proxy/")
}
