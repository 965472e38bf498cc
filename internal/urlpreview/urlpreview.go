// Package urlpreview owns URL previews (Client-Server API, GET
// /_matrix/client/v1/media/preview_url): a page a user is about to send is
// fetched by the server, its OpenGraph metadata read (og:* properties, else
// the <title> and the meta description), and its og:image fetched and kept
// as local media, so the client shows a card without contacting the site.
//
// The server, not the client, talks to the site: every request goes through
// internal/outbound, which refuses private, loopback and link-local addresses
// unless the operator allows them, follows at most a few redirects (http and
// https only) and bounds time and size. Pages are read up to MaxPageBytes;
// images are stored through the media service, so they are size-limited and
// virus-scanned like uploads. A preview is kept for an hour; concurrent
// requests for one URL fetch it once. Previews are off unless the operator
// turns them on (url_preview): a server that fetches links its users paste
// tells the linked site that someone here is looking, which a state service
// may not want.
package urlpreview

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	_ "image/gif" // image formats whose size a preview reports
	_ "image/jpeg"
	_ "image/png"
	"io"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	_ "golang.org/x/image/webp"
	"golang.org/x/net/html"

	"conclave/internal/lru"
	"conclave/internal/matrix"
)

// Limits.
const (
	// MaxURLLength bounds the URL a client asks about.
	MaxURLLength = 2048
	// MaxPageBytes is how much of an HTML page is read: the <head> where
	// OpenGraph lives comes first.
	MaxPageBytes = 1 << 20
	// MaxImageBytes bounds a preview image, whatever the upload limit.
	MaxImageBytes = 10 << 20
	// MaxRedirects bounds the hops of one fetch.
	MaxRedirects = 5
	// keepFor is how long a preview is served from memory.
	keepFor = time.Hour
	// cacheEntries bounds the previews kept.
	cacheEntries = 2048
	// maxValue bounds one metadata value in the answer.
	maxValue = 4096
	// maxKeys bounds the metadata keys in one answer.
	maxKeys = 64
)

// StoreImage keeps an image as local media on behalf of userID and returns
// its mxc:// URI (media.Service.Upload: size limit, virus scan).
type StoreImage func(ctx context.Context, userID string, body []byte, contentType, filename string) (string, error)

// Service makes previews.
type Service struct {
	// HTTP fetches pages and images: an outbound client that follows
	// redirects (see New).
	HTTP *http.Client
	// Store keeps preview images.
	Store StoreImage
	// MaxImageBytes bounds a preview image (the upload limit).
	MaxImageBytes int64

	cache *lru.Cache[string, cached]
	mu    sync.Mutex
	busy  map[string]*flight
	now   func() time.Time
}

type cached struct {
	at      time.Time
	preview json.RawMessage
	err     error
}

type flight struct {
	done chan struct{}
	res  cached
}

// New returns a service fetching through client (an outbound.Client's
// redirect-following HTTP client, see outbound.Client.Redirecting).
func New(client *http.Client, store StoreImage, maxImageBytes int64) *Service {
	// A preview image is held in memory while stored: bounded below the
	// upload limit.
	maxImageBytes = min(maxImageBytes, MaxImageBytes)
	return &Service{HTTP: client, Store: store, MaxImageBytes: maxImageBytes,
		cache: lru.New[string, cached](cacheEntries), busy: map[string]*flight{}, now: time.Now}
}

// CheckRedirect accepts only http and https hops (given to
// outbound.Client.Redirecting).
func CheckRedirect(next *http.Request) error {
	if next.URL.Scheme != "http" && next.URL.Scheme != "https" {
		return fmt.Errorf("urlpreview: redirect to a %q URL", next.URL.Scheme)
	}
	return nil
}

// Preview returns the preview of rawURL as the spec's JSON object (og:*
// keys, matrix:image:size). userID is who asked: a preview image is stored
// in their name.
func (s *Service) Preview(ctx context.Context, userID, rawURL string) (json.RawMessage, error) {
	u, err := checkURL(rawURL)
	if err != nil {
		return nil, err
	}
	key := u.String()
	if c, ok := s.cache.Get(key); ok && s.now().Sub(c.at) < keepFor {
		return c.preview, c.err
	}
	s.mu.Lock()
	if f := s.busy[key]; f != nil {
		s.mu.Unlock()
		select {
		case <-f.done:
			return f.res.preview, f.res.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f := &flight{done: make(chan struct{})}
	s.busy[key] = f
	s.mu.Unlock()

	// The fetch is the URL's, not this request's: a client giving up does
	// not waste it for the others waiting.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	p, err := s.fetch(fctx, userID, u)
	cancel()
	f.res = cached{at: s.now(), preview: p, err: err}
	if err == nil || isPermanent(err) {
		s.cache.Put(key, f.res)
	}
	s.mu.Lock()
	delete(s.busy, key)
	s.mu.Unlock()
	close(f.done)
	return p, err
}

func checkURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, matrix.Errorf(http.StatusBadRequest, matrix.ErrMissingParam, "Missing url parameter")
	}
	if len(raw) > MaxURLLength {
		return nil, matrix.InvalidParam("The URL is longer than %d bytes", MaxURLLength)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return nil, matrix.InvalidParam("Only http and https URLs without credentials can be previewed")
	}
	u.Fragment = ""
	return u, nil
}

// permanent marks answers worth remembering (the site answered, badly),
// unlike network failures, which the next request tries again.
type permanent struct{ error }

func isPermanent(err error) bool {
	var p permanent
	return errors.As(err, &p)
}

func (s *Service) fetch(ctx context.Context, userID string, u *url.URL) (json.RawMessage, error) {
	resp, err := s.get(ctx, u.String())
	if err != nil {
		return nil, matrix.Errorf(http.StatusBadGateway, matrix.ErrUnknown, "Could not fetch the URL: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, permanent{matrix.Errorf(http.StatusBadGateway, matrix.ErrUnknown, "The URL answered %d", resp.StatusCode)}
	}
	ctype, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	og := map[string]any{}
	switch {
	case strings.HasPrefix(ctype, "image/"):
		// A link to an image: its preview is the image.
		if err := s.addImage(ctx, userID, og, resp, path.Base(resp.Request.URL.Path)); err != nil {
			return nil, err
		}
		og["og:title"] = path.Base(resp.Request.URL.Path)
	case ctype == "text/html" || ctype == "application/xhtml+xml":
		body, err := io.ReadAll(io.LimitReader(resp.Body, MaxPageBytes))
		if err != nil {
			return nil, matrix.Errorf(http.StatusBadGateway, matrix.ErrUnknown, "Could not read the page: %v", err)
		}
		meta := ParseHTML(body)
		for k, v := range meta {
			og[k] = v
		}
		if img, ok := meta["og:image"]; ok {
			delete(og, "og:image")
			if ref, err := resp.Request.URL.Parse(img); err == nil && (ref.Scheme == "http" || ref.Scheme == "https") {
				// An image that cannot be had leaves the preview without
				// one, as Synapse does.
				if iresp, err := s.get(ctx, ref.String()); err == nil {
					if iresp.StatusCode == http.StatusOK {
						_ = s.addImage(ctx, userID, og, iresp, path.Base(ref.Path))
					}
					iresp.Body.Close()
				}
			}
		}
	default:
		return nil, permanent{matrix.Errorf(http.StatusBadGateway, matrix.ErrUnknown, "Cannot preview content of type %q", ctype)}
	}
	return json.Marshal(og)
}

func (s *Service) get(ctx context.Context, u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "Conclave URL preview")
	req.Header.Set("Accept", "text/html, application/xhtml+xml, image/*;q=0.9")
	return s.HTTP.Do(req)
}

// addImage stores the response's image and describes it in og.
func (s *Service) addImage(ctx context.Context, userID string, og map[string]any, resp *http.Response, name string) error {
	ctype, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if !strings.HasPrefix(ctype, "image/") {
		return permanent{matrix.Errorf(http.StatusBadGateway, matrix.ErrUnknown, "The image is not an image")}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, s.MaxImageBytes+1))
	if err != nil {
		return matrix.Errorf(http.StatusBadGateway, matrix.ErrUnknown, "Could not read the image: %v", err)
	}
	if int64(len(body)) > s.MaxImageBytes {
		return permanent{matrix.TooLarge("The image is larger than %d bytes", s.MaxImageBytes)}
	}
	mxc, err := s.Store(ctx, userID, body, ctype, name)
	if err != nil {
		return err
	}
	og["og:image"] = mxc
	og["og:image:type"] = ctype
	og["matrix:image:size"] = len(body)
	if cfg, _, err := image.DecodeConfig(bytes.NewReader(body)); err == nil {
		og["og:image:width"], og["og:image:height"] = cfg.Width, cfg.Height
	}
	return nil
}

// ParseHTML reads a page's preview metadata: every <meta property="og:…">
// (or name="og:…"), falling back to <title> for og:title and to the meta
// description for og:description. Values are bounded; the first of a
// repeated property wins.
func ParseHTML(page []byte) map[string]string {
	out := map[string]string{}
	var title strings.Builder
	inTitle := false
	description := ""
	z := html.NewTokenizer(bytes.NewReader(page))
	for {
		switch z.Next() {
		case html.ErrorToken:
			if _, ok := out["og:title"]; !ok && title.Len() > 0 {
				out["og:title"] = bound(strings.TrimSpace(title.String()))
			}
			if _, ok := out["og:description"]; !ok && description != "" {
				out["og:description"] = description
			}
			return out
		case html.StartTagToken, html.SelfClosingTagToken:
			name, hasAttr := z.TagName()
			switch string(name) {
			case "title":
				inTitle = true
			case "meta":
				var prop, content string
				for hasAttr {
					var k, v []byte
					k, v, hasAttr = z.TagAttr()
					switch strings.ToLower(string(k)) {
					case "property", "name":
						if prop == "" || strings.HasPrefix(strings.ToLower(string(v)), "og:") {
							prop = strings.ToLower(string(v))
						}
					case "content":
						content = string(v)
					}
				}
				switch {
				case strings.HasPrefix(prop, "og:"):
					if _, seen := out[prop]; !seen && len(out) < maxKeys {
						out[prop] = bound(content)
					}
				case prop == "description" && description == "":
					description = bound(content)
				}
			case "body":
				// OpenGraph lives in <head>: the rest is not read, but a
				// page without a <head> may still have its <title> later.
				if _, ok := out["og:title"]; ok || title.Len() > 0 {
					if _, ok := out["og:description"]; !ok && description != "" {
						out["og:description"] = description
					}
					if _, ok := out["og:title"]; !ok {
						out["og:title"] = bound(strings.TrimSpace(title.String()))
					}
					return out
				}
			}
		case html.EndTagToken:
			if name, _ := z.TagName(); string(name) == "title" {
				inTitle = false
			}
		case html.TextToken:
			if inTitle && title.Len() < maxValue {
				title.Write(z.Text())
			}
		}
	}
}

func bound(s string) string {
	if len(s) <= maxValue {
		return s
	}
	s = s[:maxValue]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1] // a character cut in the middle
	}
	return s
}
