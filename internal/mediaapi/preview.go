package mediaapi

import (
	"net/http"

	"conclave/internal/jsonhttp"
	"conclave/internal/store"
)

// registerPreview serves URL previews when they are on (internal/urlpreview);
// off, /preview_url stays unregistered and answers 404 M_UNRECOGNIZED like
// any unknown endpoint, as Synapse does without url_preview_enabled.
func (a *API) registerPreview(mux Mux) {
	if a.Preview == nil {
		return
	}
	for _, p := range []string{"/_matrix/media/v3", "/_matrix/media/r0", "/_matrix/client/v1/media"} {
		mux.HandleFunc("GET "+p+"/preview_url", a.authed(a.previewURL))
	}
}

// previewURL answers the preview of ?url= (the ts parameter asks for the
// page as it was then: a preview is kept an hour, so any ts is served from
// what was fetched, as Synapse mostly does).
func (a *API) previewURL(w http.ResponseWriter, r *http.Request, s *store.Session) {
	p, err := a.Preview.Preview(r.Context(), s.UserID, r.URL.Query().Get("url"))
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, p)
}
