// Package media is the media repository: uploads (direct and asynchronous),
// downloads, thumbnails, antivirus scanning, quarantine, deletion and the
// cleanup of content nothing references.
//
// Content is streamed to a staging file while it is hashed and counted (an
// upload is never held in memory), scanned by clamd when one is configured,
// then moved into a content-addressed Storage: identical uploads share one
// file. Metadata rows live in the store.
//
// Antivirus scanning sees only what the server receives. Attachments in
// end-to-end encrypted rooms are uploaded as ciphertext (the key travels in
// the encrypted event), so scanning at upload protects unencrypted rooms,
// avatars and other plain uploads only; internal/contentscan scans
// encrypted attachments when clients hand it their keys.
//
// Remote media (a server name other than ours) are fetched over
// federation, then cached and served like local ones: see remote.go.
package media

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"conclave/internal/clamd"
	"conclave/internal/matrix"
	"conclave/internal/store"
)

// Scanner scans content for malware (clamd.Client implements it).
type Scanner interface {
	Scan(ctx context.Context, r io.Reader) (clamd.Result, error)
}

// Options configure the Service.
type Options struct {
	ServerName         string
	MaxUploadBytes     int64
	ThumbnailMaxPixels int64
	// Scanner, when set, scans every upload before it becomes available.
	Scanner Scanner
	// AcceptUnscanned stores uploads the scanner could not scan (marked
	// store.ScanUnscanned) instead of refusing them with 503.
	AcceptUnscanned bool
	// LegacyFreeze marks new uploads restricted: the deprecated
	// unauthenticated endpoints answer 404 for them.
	LegacyFreeze bool
	// RateLimit limits uploads and creates per user.
	RateLimit bool
	Log       *slog.Logger
}

// Service is the media repository.
type Service struct {
	st      store.MediaStore
	storage Storage
	opt     Options
	log     *slog.Logger
	now     func() time.Time
	limit   *limiter

	unusedExpiry atomic.Int64 // nanoseconds; see SetUnusedExpiry
	waitRecheck  atomic.Int64 // nanoseconds; see SetWaitRecheck
	uploaded     atomic.Int64 // bytes stored by uploads; see UploadedBytes

	// gc orders file placement against file deletion within this process:
	// writers hold it shared from placing a file until the row referencing
	// it commits; deleting unreferenced files holds it exclusively. Other
	// processes sharing the storage are ordered by the protocol described
	// at removeIfUnreferenced, which holds without it; the lock only spares
	// this process's readers the moment a file is set aside.
	gc sync.RWMutex

	waitMu  sync.Mutex
	waiters map[string]*waiter // media ID → downloads waiting for its content
	waiting int                // sum of the waiters' n

	thumbs   inflight
	thumbSem chan struct{}

	// Remote media (remote.go): fetched through fetcher, one fetch per
	// media at a time, in the background context bg (ended by Close).
	fetcher  Fetcher
	fetchMu  sync.Mutex
	fetching map[string]*fetchCall
	bg       context.Context
	stopBG   context.CancelFunc
	// hookFetchJoined, when set, is told each time a request joins the
	// fetch of a remote media (key origin/mediaID) and how many have.
	hookFetchJoined func(key string, joined int)

	startupCleanup chan struct{}

	// Test hooks, run when set: between placing a file and committing the
	// row that references it (hookPlaced), and in removeIfUnreferenced
	// between the first read of the rows and setting content aside
	// (hookChecked), and between that and the second read (hookAside).
	hookPlaced  func(hash string)
	hookChecked func()
	hookAside   func()
}

// Limits on the asynchronous upload flow.
const (
	// DefaultUnusedExpiry is how long a created media ID waits for its
	// content (Synapse: 24 hours).
	DefaultUnusedExpiry = 24 * time.Hour
	// MaxPendingUploads is how many created-but-unfilled media IDs a user
	// may hold (Synapse's max_pending_media_uploads default is 5).
	MaxPendingUploads = 10
	// DefaultWait and MaxWait bound timeout_ms on downloads of media whose
	// content is not uploaded yet (the spec's default is 20 s).
	DefaultWait = 20 * time.Second
	MaxWait     = 60 * time.Second
	// MaxWaitersPerMedia and MaxWaiters bound the downloads waiting for
	// content at once, per media ID and in all: past them a download that
	// asked to wait is answered 429 at once instead.
	MaxWaitersPerMedia = 64
	MaxWaiters         = 10_000
	// DefaultWaitRecheck is how often a waiting download reads the media
	// row again: an upload through another process sharing the database
	// does not wake this one's waiters.
	DefaultWaitRecheck = time.Second
)

// Per-user upload rate: a burst of uploadBurst, then uploadRate per second.
const (
	uploadRate  = 1.0
	uploadBurst = 20
)

// New returns the service.
func New(st store.MediaStore, storage Storage, opt Options) *Service {
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	s := &Service{
		st: st, storage: storage, opt: opt, log: opt.Log, now: time.Now,
		limit:    newLimiter(uploadRate, uploadBurst),
		waiters:  map[string]*waiter{},
		thumbSem: make(chan struct{}, 2),
		fetching: map[string]*fetchCall{},

		startupCleanup: make(chan struct{}),
	}
	s.bg, s.stopBG = context.WithCancel(context.Background())
	s.unusedExpiry.Store(int64(DefaultUnusedExpiry))
	s.waitRecheck.Store(int64(DefaultWaitRecheck))
	return s
}

// SetUnusedExpiry changes how long created media IDs wait for content.
func (s *Service) SetUnusedExpiry(d time.Duration) { s.unusedExpiry.Store(int64(d)) }

// SetWaitRecheck changes how often waiting downloads read the media row
// again (tests: a long interval leaves only the wake-up of an upload).
func (s *Service) SetWaitRecheck(d time.Duration) { s.waitRecheck.Store(int64(d)) }

// UploadedBytes is the content accepted by uploads since start (metrics).
func (s *Service) UploadedBytes() int64 { return s.uploaded.Load() }

// MaxUploadBytes is the upload limit (m.upload.size in /config).
func (s *Service) MaxUploadBytes() int64 { return s.opt.MaxUploadBytes }

// ServerName is the server name in local mxc URIs.
func (s *Service) ServerName() string { return s.opt.ServerName }

// ValidMediaID accepts media IDs of 1 to 255 characters from [A-Za-z0-9_-]:
// the alphabet of the IDs we mint, so nothing else can name local media and
// no ID can carry a path separator or a dot.
func ValidMediaID(id string) bool {
	if len(id) == 0 || len(id) > 255 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func newMediaID() string {
	var b [18]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (s *Service) mxc(mediaID string) string { return "mxc://" + s.opt.ServerName + "/" + mediaID }

// Upload describes one upload request's body and metadata.
type Upload struct {
	Body          io.Reader
	ContentLength int64 // -1 when unknown
	ContentType   string
	Filename      string
}

func (s *Service) rateLimit(userID string) error {
	if !s.opt.RateLimit {
		return nil
	}
	if ok, wait := s.limit.take(userID); !ok {
		return matrix.LimitExceeded(max(wait.Milliseconds(), 1))
	}
	return nil
}

// checkMeta validates and normalises the content type and filename.
func checkMeta(u *Upload) error {
	ct := strings.TrimSpace(u.ContentType)
	if ct == "" {
		ct = "application/octet-stream"
	}
	if len(ct) > 255 || !utf8.ValidString(ct) {
		return matrix.InvalidParam("Content-Type is too long or not UTF-8")
	}
	if _, _, err := mime.ParseMediaType(ct); err != nil {
		return matrix.InvalidParam("Content-Type %q is not a media type", ct)
	}
	u.ContentType = ct
	if len(u.Filename) > 1024 || !utf8.ValidString(u.Filename) || strings.ContainsRune(u.Filename, 0) {
		return matrix.InvalidParam("filename must be valid UTF-8 of at most 1024 bytes")
	}
	return nil
}

// staged is an upload in its staging file, hashed and counted.
type staged struct {
	path string
	hash string
	size int64
}

func (st *staged) discard() {
	if st != nil && st.path != "" {
		os.Remove(st.path)
	}
}

// stage streams the body into a staging file, hashing as it goes, and
// refuses bodies over the limit without keeping anything.
func (s *Service) stage(u *Upload) (*staged, error) {
	limit := s.opt.MaxUploadBytes
	if u.ContentLength > limit {
		return nil, matrix.TooLarge("Upload is larger than the %d bytes allowed", limit)
	}
	f, err := s.storage.TempFile()
	if err != nil {
		return nil, err
	}
	st := &staged{path: f.Name()}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(u.Body, limit+1))
	if err != nil {
		f.Close()
		st.discard()
		var we *os.PathError
		if errors.As(err, &we) {
			return nil, err // our side failed (disk full…): a 500 and a log line
		}
		return nil, matrix.Errorf(http.StatusBadRequest, matrix.ErrUnknown, "Could not read the upload body")
	}
	if n > limit {
		f.Close()
		st.discard()
		return nil, matrix.TooLarge("Upload is larger than the %d bytes allowed", limit)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		st.discard()
		return nil, err
	}
	if err := f.Close(); err != nil {
		st.discard()
		return nil, err
	}
	st.hash = hex.EncodeToString(h.Sum(nil))
	st.size = n
	if st.path, err = s.storage.Seal(st.path, st.hash); err != nil {
		os.Remove(f.Name())
		return nil, err
	}
	return st, nil
}

// ErrInfected is the refusal of content the scanner flagged. Like
// matrix-content-scanner, it is 403 (M_FORBIDDEN): the request is
// understood and will never be accepted.
func errInfected(sig string) error {
	return matrix.Forbidden("This file was flagged by the antivirus scanner (%s) and was not stored", sig)
}

// errScannerDown is the refusal while clamd cannot be reached and
// clamd_unreachable is refuse: 503 M_UNKNOWN, a temporary condition the
// client may retry.
var errScannerDown = matrix.Errorf(http.StatusServiceUnavailable, matrix.ErrUnknown, "The antivirus scanner is unavailable; try the upload again later")

// scan returns the scan status to record, or the refusal. Verdicts are
// cached by content hash, so identical content is scanned once.
func (s *Service) scan(ctx context.Context, st *staged) (string, error) {
	if s.opt.Scanner == nil {
		return store.ScanNone, nil
	}
	if r, err := s.st.GetScanResult(ctx, st.hash); err == nil {
		if r.Status == store.ScanInfected {
			return "", errInfected(r.Signature)
		}
		return store.ScanClean, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return "", err
	}
	f, err := os.Open(st.path)
	if err != nil {
		return "", err
	}
	res, err := s.opt.Scanner.Scan(ctx, f)
	f.Close()
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		s.log.Warn("media: antivirus scan failed", "err", err, "sha256", st.hash, "accept", s.opt.AcceptUnscanned)
		if s.opt.AcceptUnscanned {
			return store.ScanUnscanned, nil
		}
		return "", errScannerDown
	}
	verdict := &store.ScanResult{SHA256: st.hash, Status: store.ScanClean, ScannedTS: s.now().UnixMilli()}
	if res.Infected {
		verdict.Status, verdict.Signature = store.ScanInfected, res.Signature
	}
	if err := s.st.PutScanResult(ctx, verdict); err != nil {
		return "", err
	}
	if res.Infected {
		s.log.Warn("media: upload refused by the antivirus scanner", "signature", res.Signature, "sha256", st.hash)
		return "", errInfected(res.Signature)
	}
	return store.ScanClean, nil
}

// Upload stores content for userID and returns its mxc URI
// (POST /_matrix/media/v3/upload).
func (s *Service) Upload(ctx context.Context, userID string, u Upload) (string, error) {
	if err := s.rateLimit(userID); err != nil {
		return "", err
	}
	if err := checkMeta(&u); err != nil {
		return "", err
	}
	st, err := s.stage(&u)
	if err != nil {
		return "", err
	}
	defer st.discard()
	status, err := s.scan(ctx, st)
	if err != nil {
		return "", err
	}
	now := s.now().UnixMilli()
	m := &store.Media{
		MediaID: newMediaID(), UserID: userID, ContentType: u.ContentType, Filename: u.Filename,
		Size: st.size, SHA256: st.hash, CreatedTS: now, UploadedTS: now, ScanStatus: status, Restricted: s.opt.LegacyFreeze,
	}
	err = s.placeAndCommit(ctx, st.hash, st.path, func() error { return s.st.CreateMedia(ctx, m) })
	if err != nil {
		s.removeIfUnreferenced(context.WithoutCancel(ctx), []string{st.hash})
		return "", err
	}
	s.uploaded.Add(m.Size)
	return s.mxc(m.MediaID), nil
}

// Create reserves a media ID for a later UploadTo
// (POST /_matrix/media/v1/create); it returns the mxc URI and when the
// reservation expires (ms since the epoch).
func (s *Service) Create(ctx context.Context, userID string) (string, int64, error) {
	if err := s.rateLimit(userID); err != nil {
		return "", 0, err
	}
	now := s.now()
	expiry := time.Duration(s.unusedExpiry.Load())
	n, err := s.st.CountPendingMedia(ctx, userID, now.Add(-expiry).UnixMilli())
	if err != nil {
		return "", 0, err
	}
	if n >= MaxPendingUploads {
		// The spec's 429 for "too many uploads which have not yet been completed".
		return "", 0, matrix.LimitExceeded(60_000)
	}
	m := &store.Media{MediaID: newMediaID(), UserID: userID, CreatedTS: now.UnixMilli()}
	if err := s.st.CreateMedia(ctx, m); err != nil {
		return "", 0, err
	}
	return s.mxc(m.MediaID), now.Add(expiry).UnixMilli(), nil
}

// UploadTo fills a media ID reserved by Create
// (PUT /_matrix/media/v3/upload/{serverName}/{mediaId}): only its creator,
// only once (409 M_CANNOT_OVERWRITE_MEDIA), only before it expires (404).
func (s *Service) UploadTo(ctx context.Context, userID, serverName, mediaID string, u Upload) error {
	if serverName != s.opt.ServerName || !ValidMediaID(mediaID) {
		return matrix.NotFound("Unknown media ID")
	}
	m, err := s.st.GetMedia(ctx, mediaID)
	if errors.Is(err, store.ErrNotFound) {
		return matrix.NotFound("Unknown media ID")
	}
	if err != nil {
		return err
	}
	if m.UserID != userID {
		return matrix.Forbidden("Only the creator of the media ID can upload to it")
	}
	if m.SHA256 != "" {
		return matrix.Errorf(http.StatusConflict, matrix.ErrCannotOverwrite, "Media ID already has content")
	}
	if s.expired(m) {
		return matrix.NotFound("Media ID has expired")
	}
	if err := s.rateLimit(userID); err != nil {
		return err
	}
	if err := checkMeta(&u); err != nil {
		return err
	}
	st, err := s.stage(&u)
	if err != nil {
		return err
	}
	defer st.discard()
	status, err := s.scan(ctx, st)
	if err != nil {
		return err
	}
	m.ContentType, m.Filename, m.Size, m.SHA256 = u.ContentType, u.Filename, st.size, st.hash
	m.UploadedTS, m.ScanStatus, m.Restricted = s.now().UnixMilli(), status, s.opt.LegacyFreeze
	err = s.placeAndCommit(ctx, st.hash, st.path, func() error { return s.st.CompleteMedia(ctx, m) })
	if err != nil {
		// A concurrent PUT won: our file may now be unreferenced.
		s.removeIfUnreferenced(context.WithoutCancel(ctx), []string{m.SHA256})
		switch {
		case errors.Is(err, store.ErrConflict):
			return matrix.Errorf(http.StatusConflict, matrix.ErrCannotOverwrite, "Media ID already has content")
		case errors.Is(err, store.ErrNotFound):
			return matrix.NotFound("Unknown media ID")
		}
		return err
	}
	s.uploaded.Add(m.Size)
	s.notify(mediaID)
	return nil
}

// placeAndCommit makes the sealed staging file at path available as the
// content hash and runs commit, which stores the row referencing it; see
// removeIfUnreferenced for why the file is placed a second time after the
// commit. The staging file stays for the caller to remove.
func (s *Service) placeAndCommit(ctx context.Context, hash, path string, commit func() error) error {
	s.gc.RLock()
	defer s.gc.RUnlock()
	if err := s.storage.Place(ctx, hash, path); err != nil {
		return err
	}
	if s.hookPlaced != nil {
		s.hookPlaced(hash)
	}
	if err := commit(); err != nil {
		return err
	}
	return s.storage.Place(context.WithoutCancel(ctx), hash, path)
}

func (s *Service) expired(m *store.Media) bool {
	expiry := time.Duration(s.unusedExpiry.Load())
	return m.SHA256 == "" && s.now().UnixMilli() >= m.CreatedTS+expiry.Milliseconds()
}

// waiter is the downloads waiting for one media ID's content: ch is closed
// when it arrives, n counts the downloads still holding the entry.
type waiter struct {
	ch chan struct{}
	n  int
}

// errTooManyWaiters refuses a wait past MaxWaitersPerMedia or MaxWaiters.
var errTooManyWaiters = matrix.LimitExceeded(1000)

// wait registers a download waiting for mediaID's content and returns the
// channel closed when it arrives, and the function the download calls when
// it stops waiting, whatever the reason: the entry lives exactly as long as
// someone waits on it, so requests for media IDs that never get content
// (unknown, quarantined, expired) leave nothing behind.
func (s *Service) wait(mediaID string) (<-chan struct{}, func(), error) {
	s.waitMu.Lock()
	defer s.waitMu.Unlock()
	w := s.waiters[mediaID]
	if s.waiting >= MaxWaiters || w != nil && w.n >= MaxWaitersPerMedia {
		return nil, nil, errTooManyWaiters
	}
	if w == nil {
		w = &waiter{ch: make(chan struct{})}
		s.waiters[mediaID] = w
	}
	w.n++
	s.waiting++
	done := false
	return w.ch, func() {
		s.waitMu.Lock()
		defer s.waitMu.Unlock()
		if done {
			return
		}
		done = true
		s.waiting--
		if w.n--; w.n == 0 && s.waiters[mediaID] == w {
			delete(s.waiters, mediaID)
		}
	}, nil
}

// notify wakes the downloads waiting for mediaID. The entry goes: those
// woken release their count on it, and a later wait starts a new one.
func (s *Service) notify(mediaID string) {
	s.waitMu.Lock()
	defer s.waitMu.Unlock()
	if w := s.waiters[mediaID]; w != nil {
		close(w.ch)
		delete(s.waiters, mediaID)
	}
}

// WaitingDownloads reports the media IDs with waiting downloads and the
// number of those downloads.
func (s *Service) WaitingDownloads() (mediaIDs, downloads int) {
	s.waitMu.Lock()
	defer s.waitMu.Unlock()
	return len(s.waiters), s.waiting
}

// Request says who asks for media and how.
type Request struct {
	ServerName string
	MediaID    string
	// Legacy is the deprecated unauthenticated endpoint: restricted media
	// (uploaded while the legacy freeze was on) are not served there.
	Legacy bool
	// Wait is how long to wait for content not uploaded yet (timeout_ms).
	Wait time.Duration
}

// errNotYetUploaded is the spec's answer when the wait ends first.
var errNotYetUploaded = matrix.Errorf(http.StatusGatewayTimeout, matrix.ErrNotYetUploaded, "Media has not been uploaded yet")

// lookup resolves a request to a media row with content, waiting for
// pending uploads as asked.
func (s *Service) lookup(ctx context.Context, req Request) (*store.Media, error) {
	if !ValidMediaID(req.MediaID) {
		return nil, matrix.NotFound("Unknown media ID")
	}
	if req.ServerName != s.opt.ServerName {
		return s.remote(ctx, req)
	}
	wait := min(max(req.Wait, 0), MaxWait)
	var ch <-chan struct{}
	var release func()
	defer func() {
		if release != nil {
			release()
		}
	}()
	// register (again) before each read, so a completion in between is seen.
	register := func() error {
		if release != nil {
			release()
		}
		var err error
		ch, release, err = s.wait(req.MediaID)
		return err
	}
	if wait > 0 {
		if err := register(); err != nil {
			return nil, err
		}
	}
	var deadline <-chan time.Time
	for {
		m, err := s.st.GetMedia(ctx, req.MediaID)
		if errors.Is(err, store.ErrNotFound) {
			return nil, matrix.NotFound("Unknown media ID")
		}
		if err != nil {
			return nil, err
		}
		if m.Quarantined || (req.Legacy && m.Restricted) || m.Origin != "" {
			// (A cached remote media's ID of ours is no local media.)
			return nil, matrix.NotFound("Unknown media ID")
		}
		if m.SHA256 != "" {
			return m, nil
		}
		if s.expired(m) {
			return nil, matrix.NotFound("Unknown media ID")
		}
		if wait <= 0 {
			return nil, errNotYetUploaded
		}
		if deadline == nil {
			t := time.NewTimer(wait)
			defer t.Stop()
			deadline = t.C
		}
		recheck := time.NewTimer(time.Duration(s.waitRecheck.Load()))
		select {
		case <-ch:
			if register() != nil {
				ch = nil // over the bounds: rechecks only
			}
		case <-recheck.C:
		case <-deadline:
			recheck.Stop()
			return nil, errNotYetUploaded
		case <-ctx.Done():
			recheck.Stop()
			return nil, ctx.Err()
		}
		recheck.Stop()
	}
}

// Content is media being served.
type Content struct {
	Media  *store.Media
	Object Object
}

// Download opens a media's content.
func (s *Service) Download(ctx context.Context, req Request) (*Content, error) {
	m, err := s.lookup(ctx, req)
	if err != nil {
		return nil, err
	}
	obj, err := s.storage.Open(ctx, m.SHA256)
	for try := 1; errors.Is(err, fs.ErrNotExist) && try <= 3; try++ {
		// Another process may hold it aside for one read of the rows (see
		// removeIfUnreferenced).
		select {
		case <-time.After(time.Duration(try) * 20 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		obj, err = s.storage.Open(ctx, m.SHA256)
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			s.log.Error("media: content missing from storage", "media_id", m.MediaID, "sha256", m.SHA256)
			return nil, matrix.NotFound("Media content is missing")
		}
		return nil, err
	}
	return &Content{Media: m, Object: obj}, nil
}

// Quarantine hides (or, with false, shows again) a media: quarantined
// media answer 404 everywhere. Remote media are quarantined here, cached or
// not: one not fetched yet is then never fetched while quarantined.
func (s *Service) Quarantine(ctx context.Context, serverName, mediaID string, on bool) error {
	if !ValidMediaID(mediaID) {
		return matrix.NotFound("Unknown media ID")
	}
	if serverName != s.opt.ServerName {
		return s.quarantineRemote(ctx, serverName, mediaID, on)
	}
	if m, err := s.st.GetMedia(ctx, mediaID); err == nil && m.Origin != "" {
		return matrix.NotFound("Unknown media ID")
	}
	err := s.st.SetMediaQuarantined(ctx, mediaID, on)
	if errors.Is(err, store.ErrNotFound) {
		return matrix.NotFound("Unknown media ID")
	}
	return err
}

// Delete removes a local media, its thumbnails and any file nothing else
// references.
func (s *Service) Delete(ctx context.Context, serverName, mediaID string) error {
	if serverName != s.opt.ServerName {
		// Synapse: 400 "Can only delete local media".
		return matrix.Errorf(http.StatusBadRequest, matrix.ErrUnknown, "Can only delete local media")
	}
	if !ValidMediaID(mediaID) {
		return matrix.NotFound("Unknown media ID")
	}
	hashes, err := s.st.DeleteMedia(ctx, mediaID)
	if errors.Is(err, store.ErrNotFound) {
		return matrix.NotFound("Unknown media ID")
	}
	if err != nil {
		return err
	}
	s.removeIfUnreferenced(ctx, hashes)
	return nil
}

// removeIfUnreferenced deletes those of hashes no row references. Failures
// are logged: the next orphan cleanup retries them.
//
// Several processes may share the storage and the database, and a row
// referencing a hash may be about to commit in another one, whose writer
// has already found the file in place. Deleting after a check that found no
// row would lose that file, and no lock of this process orders the two. So
// content is never deleted directly: it is set aside (renamed out of reach
// into this process's staging directory), the rows are read again, and
// content that turned out referenced is put back. The writers
// (placeAndCommit) place their file, commit their row, then place it again
// from their staging copy. Each side writes, then reads what the other
// writes:
//
//	deleter: D1 set aside      D2 read the rows       (put back if a row)
//	writer:  W1 place          W2 commit the row      W3 place again
//
// Renames, links and commits are atomic and seen in one order, by the
// filesystem and the database. If D2 comes after W2, the deleter sees the
// row and puts the content back. Otherwise D1 < D2 < W2 < W3: the content
// was set aside before W3, which places it again. Either way the content is
// there once the writer answers, and any later deleter sees the row. A
// process dying in between leaves its staging copy sealed (named by its
// hash), and the next start places it (FileStorage.recover).
//
// A reader of content that is referenced can still find it missing for
// the deleter's one read of the rows, when a row committed between the two
// reads: Download looks again before answering 404.
func (s *Service) removeIfUnreferenced(ctx context.Context, hashes []string) int {
	if len(hashes) == 0 {
		return 0
	}
	s.gc.Lock()
	defer s.gc.Unlock()
	refs, err := s.st.ReferencedHashes(ctx, hashes)
	if err != nil {
		s.log.Error("media: checking references", "err", err)
		return 0
	}
	if s.hookChecked != nil {
		s.hookChecked()
	}
	aside := map[string]string{}
	var check []string
	for _, h := range hashes {
		if refs[h] || aside[h] != "" {
			continue
		}
		p, err := s.storage.Aside(ctx, h)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				s.log.Error("media: deleting unreferenced content", "sha256", h, "err", err)
			}
			continue
		}
		aside[h] = p
		check = append(check, h)
	}
	if len(aside) == 0 {
		return 0
	}
	if s.hookAside != nil {
		s.hookAside()
	}
	refs, err = s.st.ReferencedHashes(context.WithoutCancel(ctx), check)
	if err != nil {
		s.log.Error("media: checking references", "err", err)
		refs = nil
	}
	removed := 0
	for h, p := range aside {
		if refs == nil || refs[h] {
			// Referenced after all (or we cannot tell): put it back. If that
			// fails, the sealed file stays for the next start to place.
			if err := s.storage.Place(context.WithoutCancel(ctx), h, p); err != nil {
				s.log.Error("media: putting back content set aside", "sha256", h, "err", err)
				continue
			}
		} else {
			removed++
		}
		os.Remove(p)
	}
	return removed
}

// StartOrphanCleanup runs CleanupOrphans in the background (at server
// start); WaitStartupCleanup waits for it.
func (s *Service) StartOrphanCleanup(ctx context.Context) {
	go func() {
		defer close(s.startupCleanup)
		n, err := s.CleanupOrphans(ctx)
		if err != nil {
			s.log.Error("media: orphan cleanup", "err", err)
		} else if n > 0 {
			s.log.Info("media: orphan cleanup", "removed", n)
		}
	}()
}

// Close releases the storage (its staging directory) if it has anything to
// release; call it once the server no longer serves requests.
func (s *Service) Close() error {
	s.stopBG()
	if c, ok := s.storage.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// WaitStartupCleanup waits for the cleanup StartOrphanCleanup began.
func (s *Service) WaitStartupCleanup() { <-s.startupCleanup }

// CleanupOrphans deletes stored content that no media or thumbnail row
// references (left by a crash between storing a file and committing its
// row, or by a failed deletion). It returns how many files it removed.
func (s *Service) CleanupOrphans(ctx context.Context) (int, error) {
	const batch = 500
	removed := 0
	var pending []string
	flush := func() {
		removed += s.removeIfUnreferenced(ctx, pending)
		pending = pending[:0]
	}
	err := s.storage.Walk(ctx, func(hash string) error {
		pending = append(pending, hash)
		if len(pending) == batch {
			flush()
		}
		return nil
	})
	if err != nil {
		return removed, fmt.Errorf("media: walking storage: %w", err)
	}
	flush()
	return removed, nil
}
