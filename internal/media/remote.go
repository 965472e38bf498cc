package media

import (
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"time"
	"unicode/utf8"

	"conclave/internal/matrix"
	"conclave/internal/store"
)

// Remote media: content of other servers that our clients ask for through
// /_matrix/client/v1/media/{download,thumbnail}/{serverName}/{mediaId}. It
// is fetched over federation once (Fetcher: internal/federation), then kept
// like a local upload: staged under the same size limit, scanned by the
// same antivirus, placed in the same content-addressed storage, its row in
// media naming where it came from (store.Media.Origin, RemoteID) under a
// media ID of ours that is never served as local media. Thumbnails are
// made here from the original, as Synapse does. Quarantine applies to the
// cached copy, and may come first: a quarantined row without content keeps
// the media from being fetched at all.

// Remote is remote content as it arrives.
type Remote struct {
	ContentType string
	Filename    string
	Length      int64 // -1 when unknown
	Body        io.Reader
}

// Fetcher fetches another server's media: it calls fn with the content
// (at most maxBytes; reading more fails) and returns fn's error, or a
// *matrix.Error for the remote's answer (404, 504 M_NOT_YET_UPLOADED…),
// or any other error for a failure to fetch.
type Fetcher interface {
	FetchMedia(ctx context.Context, origin, mediaID string, wait time.Duration, maxBytes int64, fn func(*Remote) error) error
}

// SetFetcher lets the service fetch remote media. Without one, remote
// media answer 404.
func (s *Service) SetFetcher(f Fetcher) {
	s.fetchMu.Lock()
	s.fetcher = f
	s.fetchMu.Unlock()
}

// Fetcher is the fetcher SetFetcher set (tests wrap it).
func (s *Service) Fetcher() Fetcher {
	s.fetchMu.Lock()
	defer s.fetchMu.Unlock()
	return s.fetcher
}

// OnFetchJoined sets a test hook told each time a request joins the fetch
// of a remote media (key "origin/mediaID") and how many have joined it.
func (s *Service) OnFetchJoined(f func(key string, joined int)) {
	s.fetchMu.Lock()
	s.hookFetchJoined = f
	s.fetchMu.Unlock()
}

// Remote fetch limits.
const (
	// MaxRemoteFetches bounds the distinct remote media fetched at once;
	// past it a request for another one is answered 429.
	MaxRemoteFetches = 64
	// remoteFetchTimeout bounds one fetch beyond the wait asked for.
	remoteFetchTimeout = 5 * time.Minute
)

// fetchCall is one fetch of a remote media shared by every request for it.
type fetchCall struct {
	done   chan struct{}
	m      *store.Media
	err    error
	joined int
}

// errRemoteFailed is Synapse's answer when the other server cannot give
// the media: 502.
var errRemoteFailed = matrix.Errorf(http.StatusBadGateway, matrix.ErrUnknown, "Failed to fetch remote media")

// errRemoteTooLarge: Client-Server API, GET /_matrix/client/v1/media/download,
// "502: The content is too large for the server to serve".
func errRemoteTooLarge(limit int64) error {
	return matrix.Errorf(http.StatusBadGateway, matrix.ErrTooLarge, "Remote media is larger than the %d bytes this server accepts", limit)
}

// remote resolves a request for another server's media to its cached row,
// fetching it first if need be.
func (s *Service) remote(ctx context.Context, req Request) (*store.Media, error) {
	// With the legacy freeze on, the deprecated unauthenticated endpoints
	// neither fetch remote media nor serve what authenticated requests
	// fetched: Synapse's enable_authenticated_media (its default). Off,
	// they serve remote media as they serve local media (Synapse with
	// enable_authenticated_media: false, which Complement's media tests
	// assume); it is still fetched with the authenticated federation API.
	if (req.Legacy && s.opt.LegacyFreeze) || s.Fetcher() == nil || !matrix.ValidServerName(req.ServerName) {
		return nil, matrix.NotFound("Unknown media ID")
	}
	m, err := s.st.GetRemoteMedia(ctx, req.ServerName, req.MediaID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		m = nil
	case err != nil:
		return nil, err
	case m.Quarantined:
		return nil, matrix.NotFound("Unknown media ID")
	case m.SHA256 != "":
		return m, nil
	}
	return s.fetchShared(ctx, req)
}

// fetchShared fetches a remote media once however many requests ask for it
// meanwhile. The fetch runs detached from the request that started it, so
// the others are not failed when that one's client goes away; each request
// waits only as long as its own context lets it.
func (s *Service) fetchShared(ctx context.Context, req Request) (*store.Media, error) {
	key := req.ServerName + "/" + req.MediaID
	s.fetchMu.Lock()
	c := s.fetching[key]
	if c == nil {
		if len(s.fetching) >= MaxRemoteFetches {
			s.fetchMu.Unlock()
			return nil, matrix.LimitExceeded(1000)
		}
		c = &fetchCall{done: make(chan struct{})}
		s.fetching[key] = c
		wait := min(max(req.Wait, 0), MaxWait)
		f := s.fetcher
		go func() {
			fctx, cancel := context.WithTimeout(s.bg, wait+remoteFetchTimeout)
			defer cancel()
			c.m, c.err = s.fetch(fctx, f, req.ServerName, req.MediaID, wait)
			s.fetchMu.Lock()
			delete(s.fetching, key)
			s.fetchMu.Unlock()
			close(c.done)
		}()
	}
	c.joined++
	joined, hook := c.joined, s.hookFetchJoined
	s.fetchMu.Unlock()
	if hook != nil {
		hook(key, joined)
	}
	select {
	case <-c.done:
		return c.m, c.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// RemoteFetches reports the remote media being fetched now (tests, metrics).
func (s *Service) RemoteFetches() int {
	s.fetchMu.Lock()
	defer s.fetchMu.Unlock()
	return len(s.fetching)
}

// fetch fetches origin's mediaID and caches it.
func (s *Service) fetch(ctx context.Context, f Fetcher, origin, mediaID string, wait time.Duration) (*store.Media, error) {
	// Looked at again: another process may have cached (or quarantined) it
	// since this request looked.
	existing, err := s.st.GetRemoteMedia(ctx, origin, mediaID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		existing = nil
	case err != nil:
		return nil, err
	case existing.Quarantined:
		return nil, matrix.NotFound("Unknown media ID")
	case existing.SHA256 != "":
		return existing, nil
	}
	limit := s.opt.MaxUploadBytes
	var row *store.Media
	err = f.FetchMedia(ctx, origin, mediaID, wait, limit+1, func(r *Remote) error {
		u := Upload{Body: r.Body, ContentLength: r.Length, ContentType: r.ContentType, Filename: r.Filename}
		saneMeta(&u)
		st, err := s.stage(&u)
		if err != nil {
			if me, ok := matrix.AsError(err); ok {
				if me.Code == matrix.ErrTooLarge {
					return errRemoteTooLarge(limit)
				}
				return errRemoteFailed // the body broke off
			}
			return err
		}
		defer st.discard()
		status, err := s.scan(ctx, st)
		if err != nil {
			return err
		}
		now := s.now().UnixMilli()
		m := &store.Media{
			MediaID: newMediaID(), ContentType: u.ContentType, Filename: u.Filename, Size: st.size, SHA256: st.hash,
			CreatedTS: now, UploadedTS: now, ScanStatus: status, Origin: origin, RemoteID: mediaID,
			// Fetched for an authenticated request: never served by the
			// unauthenticated endpoints (see remote).
			Restricted: true,
		}
		commit := func() error { return s.st.CreateMedia(ctx, m) }
		if existing != nil {
			m.MediaID, m.CreatedTS = existing.MediaID, existing.CreatedTS
			commit = func() error { return s.st.CompleteMedia(ctx, m) }
		}
		if err := s.placeAndCommit(ctx, st.hash, st.path, commit); err != nil {
			s.removeIfUnreferenced(context.WithoutCancel(ctx), []string{st.hash})
			return err
		}
		row = m
		return nil
	})
	if errors.Is(err, store.ErrConflict) {
		// Another process cached it meanwhile: theirs is as good.
		m, err := s.st.GetRemoteMedia(ctx, origin, mediaID)
		if err != nil {
			return nil, err
		}
		if m.Quarantined || m.SHA256 == "" {
			return nil, matrix.NotFound("Unknown media ID")
		}
		return m, nil
	}
	if err != nil {
		if _, ok := matrix.AsError(err); ok {
			return nil, err
		}
		s.log.Warn("media: fetching remote media failed", "origin", origin, "media_id", mediaID, "err", err)
		return nil, errRemoteFailed
	}
	if existing != nil {
		// The row was there before (a lifted quarantine): it may have been
		// quarantined again while we fetched.
		m, err := s.st.GetMedia(ctx, row.MediaID)
		if err != nil {
			return nil, err
		}
		if m.Quarantined {
			return nil, matrix.NotFound("Unknown media ID")
		}
		return m, nil
	}
	return row, nil
}

// saneMeta keeps what a remote server said of its content only if it is
// what an upload may say: a bad content type is octet-stream, a bad file
// name none (the content is not refused for them).
func saneMeta(u *Upload) {
	name := u.Filename
	if checkMeta(u) != nil {
		u.ContentType = "application/octet-stream"
		u.Filename = ""
		if checkMeta(u) == nil && utf8.ValidString(name) && len(name) <= 1024 {
			u.Filename = name
			if checkMeta(u) != nil {
				u.Filename = ""
			}
		}
	}
}

// FilenameFromDisposition reads the file name of a Content-Disposition
// header ("" if none or unreadable); filename* (RFC 8187) is decoded.
func FilenameFromDisposition(v string) string {
	if v == "" {
		return ""
	}
	_, params, err := mime.ParseMediaType(v)
	if err != nil {
		return ""
	}
	return params["filename"]
}

// quarantineRemote sets the quarantine of a remote media, recording a row
// without content when none is cached yet.
func (s *Service) quarantineRemote(ctx context.Context, origin, mediaID string, on bool) error {
	if !matrix.ValidServerName(origin) {
		return matrix.NotFound("Unknown media ID")
	}
	for try := 0; try < 2; try++ {
		m, err := s.st.GetRemoteMedia(ctx, origin, mediaID)
		if err == nil {
			return s.st.SetMediaQuarantined(ctx, m.MediaID, on)
		}
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if !on {
			return matrix.NotFound("Unknown media ID")
		}
		err = s.st.CreateMedia(ctx, &store.Media{MediaID: newMediaID(), CreatedTS: s.now().UnixMilli(), Quarantined: true,
			Restricted: true, Origin: origin, RemoteID: mediaID})
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
		// Cached meanwhile: quarantine that row.
	}
	return errRemoteFailed
}
