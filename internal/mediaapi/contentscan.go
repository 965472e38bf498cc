package mediaapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"conclave/internal/contentscan"
	"conclave/internal/jsonhttp"
	"conclave/internal/matrix"
	"conclave/internal/media"
)

// The content scanner API (matrix-content-scanner's docs/api.md), which
// Tchap's clients call on the homeserver's own address. Its answers have
// their own shape: errors are {"reason": …, "info": …}, scans
// {"clean": bool, "info": …}.
const scannerPrefix = "/_matrix/media_proxy/unstable"

func (a *API) registerContentScanner(mux Mux) {
	if a.Scanner == nil {
		return
	}
	p := scannerPrefix
	mux.HandleFunc("GET "+p+"/public_key", a.scannerPublicKey)
	mux.HandleFunc("GET "+p+"/scan/{serverName}/{mediaId}", a.scannerAuth(a.scanPlain))
	mux.HandleFunc("POST "+p+"/scan_encrypted", a.scannerAuth(a.scanEncrypted))
	mux.HandleFunc("GET "+p+"/download/{serverName}/{mediaId}", a.scannerAuth(a.scanDownload))
	mux.HandleFunc("POST "+p+"/download_encrypted", a.scannerAuth(a.scanDownloadEncrypted))
	mux.HandleFunc("GET "+p+"/thumbnail/{serverName}/{mediaId}", a.scannerAuth(a.scanThumbnail))
}

// scannerHandler gets legacy = the request came without an access token.
type scannerHandler func(w http.ResponseWriter, r *http.Request, legacy bool)

// scannerAuth authenticates as the scanner in front of a homeserver does:
// with an Authorization header the user's access token must be valid (401
// M_MISSING_TOKEN / M_UNKNOWN_TOKEN otherwise) and media are read as through
// the authenticated media API; without one they are read as through the
// deprecated unauthenticated endpoints, which legacy_media_freeze governs.
// The access_token query parameter is not read, as that scanner does not.
func (a *API) scannerAuth(h scannerHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" {
			h(w, r, true)
			return
		}
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			token = "" // another scheme: no access token (M_MISSING_TOKEN)
		}
		if _, err := a.Accounts.Authenticate(r.Context(), strings.TrimSpace(token)); err != nil {
			scannerError(w, r, err)
			return
		}
		h(w, r, false)
	}
}

func (a *API) scannerPublicKey(w http.ResponseWriter, r *http.Request) {
	jsonhttp.OK(w, map[string]string{"public_key": a.Scanner.PublicKey()})
}

func plainRequest(r *http.Request, legacy bool) media.Request {
	return media.Request{ServerName: r.PathValue("serverName"), MediaID: r.PathValue("mediaId"), Legacy: legacy, Wait: media.DefaultWait}
}

// readFile reads the body of the _encrypted routes.
func (a *API) readFile(r *http.Request) (*contentscan.File, error) {
	body, err := jsonhttp.ReadBody(r, contentscan.MaxBodyBytes)
	if err != nil {
		return nil, err
	}
	return a.Scanner.ParseBody(body)
}

// writeVerdict answers a scan: 200 whether or not the file is clean.
func writeVerdict(w http.ResponseWriter, v contentscan.Verdict) {
	jsonhttp.OK(w, map[string]any{"clean": v.Clean, "info": v.Info})
}

func (a *API) scanPlain(w http.ResponseWriter, r *http.Request, legacy bool) {
	v, err := a.Scanner.Scan(r.Context(), plainRequest(r, legacy), nil)
	if err != nil {
		scannerError(w, r, err)
		return
	}
	writeVerdict(w, v)
}

func (a *API) scanEncrypted(w http.ResponseWriter, r *http.Request, legacy bool) {
	f, err := a.readFile(r)
	if err != nil {
		scannerError(w, r, err)
		return
	}
	v, err := a.Scanner.Scan(r.Context(), f.Request(legacy), f)
	if err != nil {
		scannerError(w, r, err)
		return
	}
	writeVerdict(w, v)
}

func (a *API) scanDownload(w http.ResponseWriter, r *http.Request, legacy bool) {
	c, err := a.Scanner.Download(r.Context(), plainRequest(r, legacy), nil)
	if err != nil {
		scannerError(w, r, err)
		return
	}
	writeContent(w, r, c, c.Media.Filename, legacy)
}

// scanDownloadEncrypted serves the attachment's ciphertext once its
// plaintext was found clean: the client decrypts it as it would a download.
func (a *API) scanDownloadEncrypted(w http.ResponseWriter, r *http.Request, legacy bool) {
	f, err := a.readFile(r)
	if err != nil {
		scannerError(w, r, err)
		return
	}
	c, err := a.Scanner.Download(r.Context(), f.Request(legacy), f)
	if err != nil {
		scannerError(w, r, err)
		return
	}
	writeContent(w, r, c, c.Media.Filename, legacy)
}

func (a *API) scanThumbnail(w http.ResponseWriter, r *http.Request, legacy bool) {
	req, err := ThumbnailParams(r, plainRequest(r, legacy))
	if err != nil {
		scannerError(w, r, err)
		return
	}
	t, err := a.Scanner.Thumbnail(r.Context(), req)
	if err != nil {
		scannerError(w, r, err)
		return
	}
	writeThumbnail(w, r, t, legacy)
}

// scannerError writes err in the scanner API's shape: its own reasons as
// they are, a Matrix error with its errcode as reason (401 for tokens, 413
// for a body too large…), anything else 500 M_UNKNOWN after logging it.
func scannerError(w http.ResponseWriter, r *http.Request, err error) {
	status, reason, info := http.StatusInternalServerError, contentscan.ReasonUnknown, "Internal Server Error"
	var ce *contentscan.Error
	switch me, ok := matrix.AsError(err); {
	case errors.As(err, &ce):
		status, reason, info = ce.Status, ce.Reason, ce.Info
	case ok:
		status, reason, info = me.Status, me.Code, me.Msg
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		status, info = http.StatusServiceUnavailable, "Request timed out"
	default:
		slog.ErrorContext(r.Context(), "internal error", "err", err, "method", r.Method, "path", r.URL.Path, "request_id", w.Header().Get("X-Request-Id"))
	}
	jsonhttp.Write(w, status, map[string]string{"reason": reason, "info": info})
}
