package clientapi

import (
	"net/http"

	"conclave/internal/event"
	"conclave/internal/jsonhttp"
	"conclave/internal/store"
)

// supportedVersions lists the spec versions whose required endpoints exist.
var supportedVersions = []string{"r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11"}

func (a *API) registerDiscovery(mux Mux) {
	mux.HandleFunc("GET /_matrix/client/versions", a.versions)
	mux.HandleFunc("GET /.well-known/matrix/client", a.wellKnown)
	handle(mux, "GET", "/capabilities", a.authed(a.capabilities))
}

func (a *API) versions(w http.ResponseWriter, r *http.Request) {
	jsonhttp.OK(w, map[string]any{
		"versions": supportedVersions,
		"unstable_features": map[string]bool{
			// Simplified sliding sync (MSC4186; slidingsync.go): what
			// matrix-rust-sdk (Element X) looks for before it syncs.
			"org.matrix.simplified_msc3575": a.SlidingSync != nil,
			// Thread subscriptions (MSC4306; threadsubs.go), and their
			// sliding sync extension (MSC4308).
			"org.matrix.msc4306": a.ThreadSubs != nil,
		},
	})
}

func (a *API) wellKnown(w http.ResponseWriter, r *http.Request) {
	base := a.Config.PublicBaseURL
	if base == "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		base = scheme + "://" + r.Host
	}
	jsonhttp.OK(w, map[string]any{"m.homeserver": map[string]string{"base_url": base}})
}

func (a *API) capabilities(w http.ResponseWriter, r *http.Request, s *store.Session) {
	// Only what createRoom and upgrade accept (spec: "m.room_versions
	// capability"): every known version, 1 and 2 included.
	avail := map[string]string{}
	for _, id := range event.CreatableRoomVersions() {
		avail[id] = "stable"
	}
	jsonhttp.OK(w, map[string]any{"capabilities": map[string]any{
		"m.change_password": map[string]bool{"enabled": true},
		"m.room_versions":   map[string]any{"default": event.DefaultRoomVersion, "available": avail},
		"m.set_displayname": map[string]bool{"enabled": true},
		"m.set_avatar_url":  map[string]bool{"enabled": true},
		"m.3pid_changes":    map[string]bool{"enabled": a.Threepids != nil && a.Threepids.Mailer != nil},
		"m.get_login_token": map[string]bool{"enabled": false},
	}})
}
