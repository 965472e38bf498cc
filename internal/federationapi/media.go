package federationapi

import (
	"crypto/rand"
	"encoding/hex"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strconv"
	"time"

	"conclave/internal/jsonhttp"
	"conclave/internal/matrix"
	"conclave/internal/media"
	"conclave/internal/mediaapi"
)

// Media other servers fetch for their users (Server-Server API, "Content
// repository", v1.11): this server's own media only (the path names no
// server; cached copies of other servers' media are never served on).
// Answers are multipart/mixed: an empty JSON object, then the content with
// its Content-Type and Content-Disposition. Quarantined media are 404, as
// for our own clients; media still being uploaded are waited for as long
// as timeout_ms asks (504 M_NOT_YET_UPLOADED after).

// RegisterMedia adds the media endpoints; m is the media repository. It
// may be called after Register (the repository is built later).
func (a *API) RegisterMedia(mux Mux, m *media.Service) {
	a.media = m
	a.HandleSigned(mux, "GET /_matrix/federation/v1/media/download/{mediaId}", a.mediaDownload)
	a.HandleSigned(mux, "GET /_matrix/federation/v1/media/thumbnail/{mediaId}", a.mediaThumbnail)
}

func (a *API) mediaRequest(r *http.Request) (media.Request, error) {
	req := media.Request{ServerName: a.ServerName, MediaID: r.PathValue("mediaId"), Wait: media.DefaultWait}
	if v := r.URL.Query().Get("timeout_ms"); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms < 0 {
			return req, matrix.InvalidParam("timeout_ms must be a non-negative integer")
		}
		req.Wait = time.Duration(min(ms, int64(media.MaxWait/time.Millisecond))) * time.Millisecond
	}
	return req, nil
}

func (a *API) mediaDownload(w http.ResponseWriter, r *http.Request) {
	req, err := a.mediaRequest(r)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	c, err := a.media.Download(r.Context(), req)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	defer c.Object.Close()
	writeMultipart(w, c.Media.ContentType, mediaapi.ContentDisposition(c.Media.ContentType, c.Media.Filename), c.Object.Size(), c.Object)
}

func (a *API) mediaThumbnail(w http.ResponseWriter, r *http.Request) {
	base, err := a.mediaRequest(r)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	req, err := mediaapi.ThumbnailParams(r, base)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	t, err := a.media.Thumbnail(r.Context(), req)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	defer t.Object.Close()
	ext := ".png"
	if t.Info.ContentType == "image/jpeg" {
		ext = ".jpg"
	}
	writeMultipart(w, t.Info.ContentType, mediaapi.ContentDisposition(t.Info.ContentType, "thumbnail"+ext), t.Object.Size(), t.Object)
}

// writeMultipart writes the two parts. Once the headers are out an error
// can only cut the answer short, which the other server sees as a broken
// multipart body.
func writeMultipart(w http.ResponseWriter, contentType, disposition string, size int64, content io.Reader) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	mw := multipart.NewWriter(w)
	if err := mw.SetBoundary(hex.EncodeToString(b[:])); err != nil {
		panic(err) // a hex boundary is always valid
	}
	w.Header().Set("Content-Type", "multipart/mixed; boundary="+mw.Boundary())
	w.WriteHeader(http.StatusOK)
	// An empty preamble's CRLF before the first boundary (RFC 2046 allows
	// it): some readers (Ruma's, so conduwuit's) expect every boundary
	// after a CRLF, the first one too.
	if _, err := io.WriteString(w, "\r\n"); err != nil {
		return
	}
	meta, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/json"}})
	if err != nil {
		return
	}
	if _, err := io.WriteString(meta, "{}"); err != nil {
		return
	}
	part, err := mw.CreatePart(textproto.MIMEHeader{
		"Content-Type":        {contentType},
		"Content-Disposition": {disposition},
		"Content-Length":      {strconv.FormatInt(size, 10)},
	})
	if err != nil {
		return
	}
	if _, err := io.Copy(part, content); err != nil {
		return
	}
	mw.Close()
}
