// Package mediaapi serves the media repository over HTTP: uploads under
// /_matrix/media/{v3,r0,v1}, authenticated downloads and thumbnails under
// /_matrix/client/v1/media (spec v1.11), the deprecated unauthenticated
// /_matrix/media/{v3,r0}/download|thumbnail, and the Synapse-compatible
// admin endpoints for quarantine and deletion, and, when the operator turns
// it on, the content scanner API under /_matrix/media_proxy/unstable
// (contentscan.go).
//
// URL previews (internal/urlpreview) are served when the operator turns them
// on; otherwise /preview_url answers 404 M_UNRECOGNIZED like any unknown
// endpoint.
package mediaapi

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"conclave/internal/accounts"
	"conclave/internal/contentscan"
	"conclave/internal/jsonhttp"
	"conclave/internal/matrix"
	"conclave/internal/media"
	"conclave/internal/store"
	"conclave/internal/urlpreview"
)

// API is the media HTTP surface.
type API struct {
	Media    *media.Service
	Accounts *accounts.Service
	// Preview serves URL previews; nil when they are off.
	Preview *urlpreview.Service
	// Scanner serves the content scanner API; nil when it is off.
	Scanner *contentscan.Service
}

// Mux is what routes are registered on (server.Mux satisfies it).
type Mux interface {
	HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request))
}

// Register adds the media endpoints to mux.
func (a *API) Register(mux Mux) {
	for _, v := range []string{"v3", "r0"} {
		p := "/_matrix/media/" + v
		mux.HandleFunc("POST "+p+"/upload", a.authed(a.upload))
		mux.HandleFunc("GET "+p+"/config", a.authed(a.config))
		mux.HandleFunc("GET "+p+"/download/{serverName}/{mediaId}", a.legacyDownload)
		mux.HandleFunc("GET "+p+"/download/{serverName}/{mediaId}/{fileName}", a.legacyDownload)
		mux.HandleFunc("GET "+p+"/thumbnail/{serverName}/{mediaId}", a.legacyThumbnail)
	}
	mux.HandleFunc("PUT /_matrix/media/v3/upload/{serverName}/{mediaId}", a.authed(a.uploadTo))
	mux.HandleFunc("POST /_matrix/media/v1/create", a.authed(a.create))

	c := "/_matrix/client/v1/media"
	mux.HandleFunc("GET "+c+"/config", a.authed(a.config))
	mux.HandleFunc("GET "+c+"/download/{serverName}/{mediaId}", a.authed(a.download))
	mux.HandleFunc("GET "+c+"/download/{serverName}/{mediaId}/{fileName}", a.authed(a.download))
	mux.HandleFunc("GET "+c+"/thumbnail/{serverName}/{mediaId}", a.authed(a.thumbnail))

	s := "/_synapse/admin/v1/media"
	mux.HandleFunc("POST "+s+"/quarantine/{serverName}/{mediaId}", a.authed(a.admin(a.quarantine)))
	mux.HandleFunc("POST "+s+"/unquarantine/{serverName}/{mediaId}", a.authed(a.admin(a.unquarantine)))
	mux.HandleFunc("DELETE "+s+"/{serverName}/{mediaId}", a.authed(a.admin(a.deleteMedia)))
	a.registerPreview(mux)
	a.registerContentScanner(mux)
}

type handler func(w http.ResponseWriter, r *http.Request, s *store.Session)

func (a *API) authed(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess, err := a.Accounts.Authenticate(r.Context(), accessToken(r))
		if err != nil {
			jsonhttp.Error(w, r, err)
			return
		}
		h(w, r, sess)
	}
}

// accessToken reads the Authorization header or the deprecated
// access_token query parameter.
func accessToken(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if t, ok := strings.CutPrefix(h, "Bearer "); ok {
			return strings.TrimSpace(t)
		}
		return ""
	}
	return r.URL.Query().Get("access_token")
}

func (a *API) admin(h handler) handler {
	return func(w http.ResponseWriter, r *http.Request, s *store.Session) {
		if !s.IsAdmin {
			jsonhttp.Error(w, r, matrix.Forbidden("You are not a server admin"))
			return
		}
		h(w, r, s)
	}
}

// uploadReadTimeout replaces the server's read timeout for upload bodies,
// which may be large and arrive over slow links.
const uploadReadTimeout = 15 * time.Minute

func uploadOf(w http.ResponseWriter, r *http.Request) media.Upload {
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(uploadReadTimeout))
	return media.Upload{
		Body:          r.Body,
		ContentLength: r.ContentLength,
		ContentType:   r.Header.Get("Content-Type"),
		Filename:      r.URL.Query().Get("filename"),
	}
}

// drainBound is how much of a refused upload's body the server still reads
// before answering, and drainTimeout how long it waits for it.
const (
	drainBound   = 64 << 20
	drainTimeout = 2 * time.Minute
)

// drainRefused reads the rest of an upload refused as too large (413
// M_TOO_LARGE), up to drainBound, before the answer is written. A client
// that sends its whole body before reading the response (browsers) would
// otherwise see the connection reset under its write — a network error
// instead of the 413 (Go's server reads at most 256 KB of an unread body
// and then closes). Bodies declared larger than the bound are not read: the
// answer is written and the connection closed.
func drainRefused(w http.ResponseWriter, r *http.Request, err error) {
	var me *matrix.Error
	if !errors.As(err, &me) || me.Code != matrix.ErrTooLarge {
		return
	}
	if r.ContentLength <= drainBound {
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(drainTimeout))
		n, _ := io.Copy(io.Discard, io.LimitReader(r.Body, drainBound+1))
		if n <= drainBound {
			return
		}
	}
	w.Header().Set("Connection", "close")
}

func (a *API) upload(w http.ResponseWriter, r *http.Request, s *store.Session) {
	uri, err := a.Media.Upload(r.Context(), s.UserID, uploadOf(w, r))
	if err != nil {
		drainRefused(w, r, err)
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]string{"content_uri": uri})
}

func (a *API) create(w http.ResponseWriter, r *http.Request, s *store.Session) {
	uri, expires, err := a.Media.Create(r.Context(), s.UserID)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]any{"content_uri": uri, "unused_expires_at": expires})
}

func (a *API) uploadTo(w http.ResponseWriter, r *http.Request, s *store.Session) {
	err := a.Media.UploadTo(r.Context(), s.UserID, r.PathValue("serverName"), r.PathValue("mediaId"), uploadOf(w, r))
	if err != nil {
		drainRefused(w, r, err)
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.Empty(w)
}

func (a *API) config(w http.ResponseWriter, r *http.Request, s *store.Session) {
	jsonhttp.OK(w, map[string]int64{"m.upload.size": a.Media.MaxUploadBytes()})
}

// mediaRequest reads the path and timeout_ms of a download or thumbnail.
func mediaRequest(r *http.Request, legacy bool) (media.Request, error) {
	req := media.Request{ServerName: r.PathValue("serverName"), MediaID: r.PathValue("mediaId"), Legacy: legacy, Wait: media.DefaultWait}
	if v := r.URL.Query().Get("timeout_ms"); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms < 0 {
			return req, matrix.InvalidParam("timeout_ms must be a non-negative integer")
		}
		req.Wait = time.Duration(min(ms, int64(media.MaxWait/time.Millisecond))) * time.Millisecond
	}
	return req, nil
}

func (a *API) download(w http.ResponseWriter, r *http.Request, s *store.Session) {
	a.serveDownload(w, r, false)
}

func (a *API) legacyDownload(w http.ResponseWriter, r *http.Request) {
	a.serveDownload(w, r, true)
}

func (a *API) serveDownload(w http.ResponseWriter, r *http.Request, legacy bool) {
	req, err := mediaRequest(r, legacy)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	c, err := a.Media.Download(r.Context(), req)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	name := c.Media.Filename
	if fn := r.PathValue("fileName"); fn != "" {
		name = fn
	}
	writeContent(w, r, c, name, legacy)
}

// writeContent writes a media's content (and closes it), named name.
func writeContent(w http.ResponseWriter, r *http.Request, c *media.Content, name string, legacy bool) {
	defer c.Object.Close()
	setSafetyHeaders(w.Header(), legacy)
	h := w.Header()
	h.Set("Content-Type", c.Media.ContentType)
	h.Set("Content-Disposition", ContentDisposition(c.Media.ContentType, name))
	h.Set("ETag", `"`+c.Media.SHA256+`"`)
	http.ServeContent(w, r, "", time.UnixMilli(c.Media.UploadedTS), c.Object)
}

func (a *API) thumbnail(w http.ResponseWriter, r *http.Request, s *store.Session) {
	a.serveThumbnail(w, r, false)
}

func (a *API) legacyThumbnail(w http.ResponseWriter, r *http.Request) {
	a.serveThumbnail(w, r, true)
}

func (a *API) serveThumbnail(w http.ResponseWriter, r *http.Request, legacy bool) {
	base, err := mediaRequest(r, legacy)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	req, err := ThumbnailParams(r, base)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	t, err := a.Media.Thumbnail(r.Context(), req)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	writeThumbnail(w, r, t, legacy)
}

// writeThumbnail writes a thumbnail (and closes it).
func writeThumbnail(w http.ResponseWriter, r *http.Request, t *media.Thumbnail, legacy bool) {
	defer t.Object.Close()
	setSafetyHeaders(w.Header(), legacy)
	h := w.Header()
	h.Set("Content-Type", t.Info.ContentType)
	ext := ".png"
	if t.Info.ContentType == "image/jpeg" {
		ext = ".jpg"
	}
	h.Set("Content-Disposition", ContentDisposition(t.Info.ContentType, "thumbnail"+ext))
	h.Set("ETag", `"`+t.Info.SHA256+`"`)
	http.ServeContent(w, r, "", t.Object.ModTime(), t.Object)
}

// maxThumbnailSide bounds width and height; larger requests get the largest
// thumbnail anyway.
const maxThumbnailSide = 100000

// ThumbnailParams reads a thumbnail request's query (width, height, method,
// animated) onto base; the federation thumbnail endpoint reads the same.
func ThumbnailParams(r *http.Request, base media.Request) (media.ThumbnailRequest, error) {
	q := r.URL.Query()
	req := media.ThumbnailRequest{Request: base, Method: "scale"}
	for _, p := range []struct {
		name string
		dst  *int
	}{{"width", &req.Width}, {"height", &req.Height}} {
		v := q.Get(p.name)
		if v == "" {
			return req, matrix.MissingParam("Missing %s", p.name)
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxThumbnailSide {
			return req, matrix.InvalidParam("%s must be an integer from 1 to %d", p.name, maxThumbnailSide)
		}
		*p.dst = n
	}
	switch m := q.Get("method"); m {
	case "":
	case "crop", "scale":
		req.Method = m
	default:
		return req, matrix.InvalidParam("method must be crop or scale")
	}
	switch v := q.Get("animated"); v {
	case "", "false":
	case "true":
		req.Animated = true
	default:
		return req, matrix.InvalidParam("animated must be true or false")
	}
	return req, nil
}

func (a *API) quarantine(w http.ResponseWriter, r *http.Request, s *store.Session) {
	a.setQuarantine(w, r, true)
}

func (a *API) unquarantine(w http.ResponseWriter, r *http.Request, s *store.Session) {
	a.setQuarantine(w, r, false)
}

func (a *API) setQuarantine(w http.ResponseWriter, r *http.Request, on bool) {
	if err := a.Media.Quarantine(r.Context(), r.PathValue("serverName"), r.PathValue("mediaId"), on); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.Empty(w)
}

func (a *API) deleteMedia(w http.ResponseWriter, r *http.Request, s *store.Session) {
	id := r.PathValue("mediaId")
	// Deleting files must finish even if the admin's client goes away.
	if err := a.Media.Delete(context.WithoutCancel(r.Context()), r.PathValue("serverName"), id); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]any{"deleted_media": []string{id}, "total": 1})
}
