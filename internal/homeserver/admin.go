package homeserver

import (
	"context"
	"net"
	"net/http"

	"conclave/internal/metrics"
	"conclave/internal/room"
	"conclave/internal/server"
	"conclave/internal/store"
)

// The admin listener (admin_listen) serves /metrics and, unless admin_pprof
// is off, /debug/pprof/. When admin_listen is empty hs.Metrics is nil,
// nothing is measured and every hook below is a no-op.

// newMetrics returns the registry when admin_listen is set, nil otherwise.
func newMetrics(adminListen string) *metrics.Metrics {
	if adminListen == "" {
		return nil
	}
	return metrics.New()
}

// countEvents wraps the room service's store so committed events (room
// creations and later events: the store's two event writes) are counted,
// whatever the backend.
func (hs *Homeserver) countEvents(st room.Store) room.Store {
	if hs.Metrics == nil {
		return st
	}
	c := eventCounter{Store: st, m: hs.Metrics}
	if l, ok := st.(store.RoomLocker); ok {
		// The room service looks for the cross-process room lock on its
		// store: the wrapper must not hide it.
		return lockingEventCounter{c, l}
	}
	return c
}

type lockingEventCounter struct {
	eventCounter
	store.RoomLocker
}

type eventCounter struct {
	room.Store
	m *metrics.Metrics
}

func (c eventCounter) PersistEvents(ctx context.Context, roomID string, events []store.NewEvent) ([]int64, error) {
	pos, err := c.Store.PersistEvents(ctx, roomID, events)
	if err == nil {
		c.m.EventsPersisted(len(pos))
	}
	return pos, err
}

func (c eventCounter) CreateRoom(ctx context.Context, r *store.Room, events []store.NewEvent) ([]int64, error) {
	pos, err := c.Store.CreateRoom(ctx, r, events)
	if err == nil {
		c.m.EventsPersisted(len(pos))
	}
	return pos, err
}

// wireMetrics connects the services' counters to the registry; it runs in
// New once the services exist.
func (hs *Homeserver) wireMetrics() {
	m := hs.Metrics
	if m == nil {
		return
	}
	m.SyncWaiting(hs.Notifier.Waiting)
	m.NotifierWakeups(hs.Notifier.Woken)
	m.MediaUploadedBytes(hs.Media.UploadedBytes)
	// SQLite's group committer reports its batch sizes; PostgreSQL has none.
	if g, ok := hs.Store.(interface{ ObserveGroupCommit(func(calls int)) }); ok {
		g.ObserveGroupCommit(m.GroupCommit)
	}
}

// instrument wraps the client mux with request metrics (when enabled). It
// must wrap the mux directly: the route label is the pattern the mux sets
// on the request.
func (hs *Homeserver) instrument(mux *server.Mux) http.Handler {
	if hs.Metrics == nil {
		return mux
	}
	return hs.Metrics.Instrument(mux, mux.Patterns())
}

// adminListeners is the admin listener when admin_listen is set: plain
// HTTP, meant for loopback or a private network, no CORS.
func (hs *Homeserver) adminListeners() []server.Listener {
	if hs.Metrics == nil {
		return nil
	}
	return []server.Listener{{
		Addr:     hs.Config.AdminListen,
		Handler:  hs.Metrics.AdminHandler(hs.Config.AdminPprof),
		MaxConns: 64,
		Bound: func(a net.Addr) {
			hs.mu.Lock()
			hs.adminAddr = a
			hs.mu.Unlock()
		},
	}}
}

// AdminAddr is the bound admin listener address (after Ready), nil when
// admin_listen is not set.
func (hs *Homeserver) AdminAddr() net.Addr {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return hs.adminAddr
}
