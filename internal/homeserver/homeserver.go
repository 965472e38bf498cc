// Package homeserver assembles one running Conclave from a Config: it opens
// the store, loads the signing key, builds the services and serves HTTP.
// cmd/conclave and the integration tests both start servers through it.
package homeserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"

	"conclave/internal/accounts"
	"conclave/internal/clientapi"
	"conclave/internal/config"
	"conclave/internal/media"
	"conclave/internal/mediaapi"
	"conclave/internal/server"
	"conclave/internal/store/sqlite"
)

// Homeserver is one Conclave instance.
type Homeserver struct {
	Config *config.Config
	Log    *slog.Logger
	Store  *sqlite.DB

	Accounts *accounts.Service
	Media    *media.Service
	Handler  http.Handler

	mu         sync.Mutex
	clientAddr net.Addr
	ready      chan struct{}
}

// New opens the data directory and store and builds the services. It does
// not listen yet; Run does.
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (*Homeserver, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	if cfg.Database != "" && !isSQLite(cfg.Database) {
		return nil, errors.New("PostgreSQL is not supported yet; leave database empty for SQLite")
	}
	db, err := sqlite.Open(ctx, cfg.SQLitePath())
	if err != nil {
		return nil, err
	}
	hs := &Homeserver{Config: &cfg, Log: log, Store: db, ready: make(chan struct{})}
	hs.Accounts = accounts.New(db, cfg.ServerName)
	if hs.Media, err = newMedia(ctx, hs.Config, db, log); err != nil {
		db.Close()
		return nil, err
	}

	mux := server.NewMux()
	api := clientapi.New(clientapi.Deps{Config: hs.Config, Store: db, Accounts: hs.Accounts})
	api.Register(mux)
	(&mediaapi.API{Media: hs.Media, Accounts: hs.Accounts}).Register(mux)
	hs.Handler = server.Wrap(mux, log)
	return hs, nil
}

func isSQLite(dsn string) bool { return len(dsn) > 7 && dsn[:7] == "sqlite:" }

// Run serves until ctx is cancelled, then shuts down gracefully and closes
// the store: every acknowledged write is already committed by then.
func (hs *Homeserver) Run(ctx context.Context) error {
	defer hs.Store.Close()
	ls := []server.Listener{{
		Addr:    hs.Config.Listen,
		Handler: hs.Handler,
		Bound: func(a net.Addr) {
			hs.mu.Lock()
			hs.clientAddr = a
			hs.mu.Unlock()
			close(hs.ready)
		},
	}}
	return server.Serve(ctx, hs.Log, hs.Config.ShutdownTimeout.Duration, ls...)
}

// Ready is closed once the client listener is bound.
func (hs *Homeserver) Ready() <-chan struct{} { return hs.ready }

// ClientAddr is the bound client API address (after Ready).
func (hs *Homeserver) ClientAddr() net.Addr {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return hs.clientAddr
}
