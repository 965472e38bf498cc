// Package contentscan is the content scanner: Tchap's (and Element's)
// Matrix Content Scanner API served by the homeserver itself, so that
// attachments of end-to-end encrypted rooms can be checked by the antivirus
// when the operator requires it. It owns the scanner's key pair (the
// public key clients encrypt request bodies to), the opening of those
// bodies (PkDecryption), the checking and in-memory decryption of encrypted
// attachments, their scanning by clamd, and a short cache of verdicts.
//
// Privacy: a client that asks for a scan hands the server the attachment's
// key, so the server sees the plaintext. It is decrypted as it streams from
// the media storage into clamd, a buffer at a time, never written anywhere,
// and nothing of it is kept; the verdict cache keys on a hash of the
// content, key and IV, not on the key itself.
//
// The HTTP surface is internal/mediaapi (contentscan.go); media are found,
// fetched from other servers and served by internal/media.
package contentscan

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"conclave/internal/clamd"
	"conclave/internal/lru"
	"conclave/internal/matrix"
	"conclave/internal/media"
)

// The scanner API's reasons (matrix-content-scanner docs/api.md): an error
// answer is {"reason": …, "info": …}.
const (
	ReasonMalformedJSON     = "MCS_MALFORMED_JSON"          // 400
	ReasonFailedToDecrypt   = "MCS_MEDIA_FAILED_TO_DECRYPT" // 400
	ReasonNotClean          = "MCS_MEDIA_NOT_CLEAN"         // 403
	ReasonMimeTypeForbidden = "MCS_MIME_TYPE_FORBIDDEN"     // 403
	ReasonBadDecryption     = "MCS_BAD_DECRYPTION"          // 403
	ReasonRequestFailed     = "MCS_MEDIA_REQUEST_FAILED"    // 502
	ReasonNotFound          = "M_NOT_FOUND"                 // 404
	ReasonUnknown           = "M_UNKNOWN"                   // 500, and 503 while clamd is down
)

// Error is a refusal in the scanner API's shape.
type Error struct {
	Status int
	Reason string
	Info   string
}

func (e *Error) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Reason, e.Info) }

func errorf(status int, reason, format string, args ...any) *Error {
	return &Error{Status: status, Reason: reason, Info: fmt.Sprintf(format, args...)}
}

// Scanner scans a stream (clamd.Client implements it).
type Scanner interface {
	Scan(ctx context.Context, r io.Reader) (clamd.Result, error)
}

// Options configure the Service.
type Options struct {
	Media   *media.Service
	Scanner Scanner
	Key     *Key
	Log     *slog.Logger
	// AllowedTypes, when not empty, are the only MIME types (detected from
	// the content: DetectType) served; BlockedTypes are refused. Either is
	// type/subtype or type/*. A refused type is 403 MCS_MIME_TYPE_FORBIDDEN.
	AllowedTypes, BlockedTypes []string
}

// Limits.
const (
	// VerdictTTL is how long a verdict is reused: long enough that the
	// members of a room opening the same attachment cause one scan, short
	// enough that new signatures apply soon.
	VerdictTTL = 10 * time.Minute
	// maxVerdicts bounds the verdict cache.
	maxVerdicts = 10_000
	// MaxConcurrentScans is how many streams go to clamd at once; others
	// wait (for as long as their request may).
	MaxConcurrentScans = 4
	// MaxPendingScans bounds the distinct scans running or waiting; past
	// it a request is answered 429 at once.
	MaxPendingScans = 256
)

// Service answers scan requests.
type Service struct {
	media   *media.Service
	scanner Scanner
	key     *Key
	types   typePolicy
	log     *slog.Logger
	now     func() time.Time

	verdicts *lru.Cache[string, cached]
	sem      chan struct{}

	mu         sync.Mutex
	pending    map[string]*scanCall
	maxPending int // MaxPendingScans; tests lower it

	// hookJoined, when set, is told each time a request joins a scan
	// another request started, hookLeading when a request starts one
	// (tests).
	hookJoined, hookLeading func(key string)

	scans atomic.Int64 // streams sent to clamd
}

type cached struct {
	v  Verdict
	at time.Time
}

// scanCall is one scan that concurrent requests for the same content share.
type scanCall struct {
	done chan struct{}
	v    Verdict
	err  error
}

// New returns the service.
func New(opt Options) *Service {
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	return &Service{
		media: opt.Media, scanner: opt.Scanner, key: opt.Key, log: opt.Log, now: time.Now,
		types:    typePolicy{allowed: opt.AllowedTypes, blocked: opt.BlockedTypes},
		verdicts: lru.New[string, cached](maxVerdicts),
		sem:      make(chan struct{}, MaxConcurrentScans),
		pending:  map[string]*scanCall{},

		maxPending: MaxPendingScans,
	}
}

// PublicKey is the key clients encrypt request bodies to.
func (s *Service) PublicKey() string { return s.key.PublicKey() }

// Scans is how many streams were sent to clamd since start.
func (s *Service) Scans() int64 { return s.scans.Load() }

// Verdict is a scan's answer.
type Verdict struct {
	Clean bool
	Info  string
	// Forbidden: the content's type (Type) is refused by the operator's
	// policy; it was not sent to clamd.
	Forbidden bool
	Type      string
}

var verdictClean = Verdict{Clean: true, Info: "File is clean"}

// Scan scans the media req names — with f, the encrypted attachment f
// describes, decrypted with f's key (req then comes from f.Request).
func (s *Service) Scan(ctx context.Context, req media.Request, f *File) (Verdict, error) {
	c, v, err := s.check(ctx, req, f)
	if err != nil {
		return Verdict{}, err
	}
	c.Object.Close()
	return v, nil
}

// Download scans the media as Scan does and, when it is clean, returns its
// content, positioned at the start, for the caller to serve and close. For
// an encrypted attachment the content is the ciphertext as stored: the
// client decrypts it, as with any download. A file that is not clean is 403
// MCS_MEDIA_NOT_CLEAN.
func (s *Service) Download(ctx context.Context, req media.Request, f *File) (*media.Content, error) {
	c, v, err := s.check(ctx, req, f)
	if err != nil {
		return nil, err
	}
	if !v.Clean {
		c.Object.Close()
		return nil, errorf(http.StatusForbidden, ReasonNotClean, "%s", v.Info)
	}
	return c, nil
}

// Thumbnail scans the original media and, when it is clean, returns the
// thumbnail req asks for. The thumbnail is made by this server from that
// original, so the original is what is scanned.
func (s *Service) Thumbnail(ctx context.Context, req media.ThumbnailRequest) (*media.Thumbnail, error) {
	c, err := s.Download(ctx, req.Request, nil)
	if err != nil {
		return nil, err
	}
	c.Object.Close()
	t, err := s.media.Thumbnail(ctx, req)
	if err != nil {
		return nil, fetchError(err)
	}
	return t, nil
}

// check opens the media and finds its verdict: cached, being found by
// another request, or scanned now.
func (s *Service) check(ctx context.Context, req media.Request, f *File) (*media.Content, Verdict, error) {
	c, err := s.media.Download(ctx, req)
	if err != nil {
		return nil, Verdict{}, fetchError(err)
	}
	stored, err := hex.DecodeString(c.Media.SHA256)
	if err != nil || len(stored) != sha256.Size {
		c.Object.Close()
		return nil, Verdict{}, fmt.Errorf("content scanner: media %s has content hash %q", c.Media.MediaID, c.Media.SHA256)
	}
	// The attachment's hash is of its ciphertext, which is what the storage
	// holds and addresses: a mismatch is known before reading anything.
	if f != nil && string(f.SHA256) != string(stored) {
		c.Object.Close()
		return nil, Verdict{}, errorf(http.StatusBadRequest, ReasonFailedToDecrypt, "The file's hash does not match its content")
	}
	key := verdictKey(stored, f)
	v, err := s.verdict(ctx, key, c, f)
	if err == nil && v.Forbidden {
		// As matrix-content-scanner: an error for scans and downloads alike.
		err = errorf(http.StatusForbidden, ReasonMimeTypeForbidden, "File type: %s not allowed", v.Type)
	}
	if err != nil {
		c.Object.Close()
		return nil, Verdict{}, err
	}
	if _, err := c.Object.Seek(0, io.SeekStart); err != nil {
		c.Object.Close()
		return nil, Verdict{}, err
	}
	return c, v, nil
}

// verdictKey names what a verdict is about: the content, and for an
// encrypted file the key and IV that turn it into the plaintext scanned.
// It is a hash, so the cache holds no key.
func verdictKey(content []byte, f *File) string {
	h := sha256.New()
	h.Write(content)
	if f != nil {
		h.Write([]byte{1})
		h.Write(f.Key)
		h.Write(f.IV)
	} else {
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (s *Service) verdict(ctx context.Context, key string, c *media.Content, f *File) (Verdict, error) {
	if e, ok := s.verdicts.Get(key); ok && s.now().Sub(e.at) < VerdictTTL {
		return e.v, nil
	}
	s.mu.Lock()
	for {
		call, ok := s.pending[key]
		if !ok {
			break
		}
		s.mu.Unlock()
		if s.hookJoined != nil {
			s.hookJoined(key)
		}
		select {
		case <-call.done:
		case <-ctx.Done():
			return Verdict{}, ctx.Err()
		}
		// A scan that ended because its first request gave up before it
		// began says nothing: look again (and scan, if nobody does).
		if !errors.Is(call.err, context.Canceled) && !errors.Is(call.err, context.DeadlineExceeded) {
			return call.v, call.err
		}
		s.mu.Lock()
	}
	if len(s.pending) >= s.maxPending {
		s.mu.Unlock()
		return Verdict{}, errorf(http.StatusTooManyRequests, matrix.ErrLimitExceeded, "Too many scans in progress; try again later")
	}
	call := &scanCall{done: make(chan struct{})}
	s.pending[key] = call
	s.mu.Unlock()
	if s.hookLeading != nil {
		s.hookLeading(key)
	}

	call.v, call.err = s.scan(ctx, c, f)
	if call.err == nil {
		s.verdicts.Put(key, cached{v: call.v, at: s.now()})
	}
	s.mu.Lock()
	delete(s.pending, key)
	s.mu.Unlock()
	close(call.done)
	return call.v, call.err
}

// errScannerDown: clamd could not give a verdict. Nothing is said clean
// without one.
var errScannerDown = errorf(http.StatusServiceUnavailable, ReasonUnknown, "The antivirus scanner is unavailable; try again later")

// scan streams the content to clamd, decrypting it on the way for an
// encrypted file and checking its hash. The plaintext only ever exists in
// the buffer being sent.
func (s *Service) scan(ctx context.Context, c *media.Content, f *File) (Verdict, error) {
	select {
	case s.sem <- struct{}{}:
		defer func() { <-s.sem }()
	case <-ctx.Done():
		return Verdict{}, ctx.Err()
	}
	// Those who joined this scan wait for it: it runs to its end (bounded
	// by the clamd client's timeout) even if the first client goes away.
	ctx = context.WithoutCancel(ctx)
	h := sha256.New()
	var r io.Reader = io.TeeReader(c.Object, h)
	if f != nil {
		r = &decryptingReader{s: f.decrypter(), r: r}
	}
	if s.types.active() {
		// The type is told by the first bytes (of the plaintext): a refused
		// type is not scanned at all.
		head := make([]byte, sniffLen)
		n, err := io.ReadFull(r, head)
		if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
			return Verdict{}, err
		}
		head = head[:n]
		if t := DetectType(head); !s.types.permits(t) {
			return Verdict{Forbidden: true, Type: t}, nil
		}
		r = io.MultiReader(bytes.NewReader(head), r)
	}
	s.scans.Add(1)
	res, err := s.scanner.Scan(ctx, r)
	if err != nil {
		if errors.Is(err, clamd.ErrUnavailable) {
			s.log.Warn("content scanner: clamd gave no verdict", "media_id", c.Media.MediaID, "err", err)
			return Verdict{}, errScannerDown
		}
		return Verdict{}, err
	}
	if f != nil && string(h.Sum(nil)) != string(f.SHA256) {
		// The stored content changed under its hash (disk corruption): the
		// plaintext scanned is not the attachment's.
		return Verdict{}, errorf(http.StatusBadRequest, ReasonFailedToDecrypt, "The file's content does not match its hash")
	}
	if res.Infected {
		return Verdict{Clean: false, Info: "The antivirus scanner flagged this file (" + res.Signature + ")"}, nil
	}
	return verdictClean, nil
}

// decryptingReader is cipher.StreamReader, decrypting in place in the
// reader's buffer, so there is no copy of the plaintext but the one clamd
// is sent.
type decryptingReader struct {
	s interface{ XORKeyStream(dst, src []byte) }
	r io.Reader
}

func (d *decryptingReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	d.s.XORKeyStream(p[:n], p[:n])
	return n, err
}

// fetchError turns the media service's answer into the scanner API's, as
// the scanner in front of a homeserver reports what the homeserver said:
// unknown media is 404 M_NOT_FOUND; a refusal to fetch (other server
// unreachable or outside the circle, content too large, not uploaded in
// time) is 502 MCS_MEDIA_REQUEST_FAILED; rate limits and bad parameters
// keep their status and errcode as reason.
func fetchError(err error) error {
	me, ok := matrix.AsError(err)
	if !ok {
		return err
	}
	switch {
	case me.Status == http.StatusNotFound:
		return errorf(http.StatusNotFound, ReasonNotFound, "%s", me.Msg)
	case me.Status == http.StatusForbidden || me.Status >= 500:
		return errorf(http.StatusBadGateway, ReasonRequestFailed, "%s", me.Msg)
	default:
		return &Error{Status: me.Status, Reason: me.Code, Info: me.Msg}
	}
}
