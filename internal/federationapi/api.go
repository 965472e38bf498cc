// Package federationapi serves the Matrix Server-Server API
// (/_matrix/federation/* and /_matrix/key/*) on the federation listener:
// handlers only, one file per area, like clientapi.
package federationapi

import (
	"net/http"
	"time"

	"conclave/internal/event"
	"conclave/internal/federation"
	"conclave/internal/jsonhttp"
	"conclave/internal/keyring"
	"conclave/internal/keys"
	"conclave/internal/media"
	"conclave/internal/room"
	"conclave/internal/store"
)

// Deps are what the API needs.
type Deps struct {
	ServerName string
	SigningKey *event.SigningKey
	// Version is reported by /_matrix/federation/v1/version.
	Version string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Keyring checks request signatures, serves the notary and knows this
	// server's old keys. Nil only in tests of the unauthenticated
	// endpoints: signed requests are then refused.
	Keyring *keyring.Keyring
	// Rooms and Federation serve the room endpoints (rooms.go); without
	// them only keys and version are served.
	Rooms      *room.Service
	Federation *federation.Service
	// EDUs takes the EDUs of received transactions (nil: ignored).
	EDUs federation.EDUHandler
	// Keys serves this server's users' device lists and keys (userkeys.go);
	// nil: not served.
	Keys *keys.Service
	// Store answers the queries (aliases, profiles).
	Store store.Store
	// Heard is told of every server whose signed request was accepted: a
	// server that talks to us is up, so what is queued for it goes now.
	Heard func(origin string)
}

// API is the Server-Server API.
type API struct {
	Deps
	keys  keyCache
	media *media.Service // RegisterMedia
}

// New returns the API.
func New(d Deps) *API {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Version == "" {
		d.Version = "dev"
	}
	return &API{Deps: d}
}

// Mux is what routes are registered on (server.Mux satisfies it); unknown
// paths must answer 404 M_UNRECOGNIZED, which server.NewMux does.
type Mux interface {
	HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request))
}

// Register adds every Server-Server endpoint to mux. Every
// /_matrix/federation/* endpoint is registered with HandleSigned, except
// those the spec leaves unauthenticated: version (and openid/userinfo).
// The /_matrix/key/* endpoints are unauthenticated.
func (a *API) Register(mux Mux) {
	mux.HandleFunc("GET /_matrix/federation/v1/version", a.version)
	a.registerKeys(mux)
	a.registerRooms(mux)
	a.registerQueries(mux)
	a.registerDirectory(mux)
	a.registerHierarchy(mux)
	a.registerUserKeys(mux)
}

// version: Server-Server API, "GET /_matrix/federation/v1/version".
// No authentication is required.
func (a *API) version(w http.ResponseWriter, r *http.Request) {
	jsonhttp.OK(w, map[string]any{"server": map[string]string{"name": "Conclave", "version": a.Version}})
}
