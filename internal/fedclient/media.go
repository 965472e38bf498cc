package fedclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"conclave/internal/outbound"
)

// Media is the content of a federation media answer, as it arrives.
type Media struct {
	ContentType string
	// Disposition is the Content-Disposition the content came with ("" if
	// none): the file name is the caller's to read from it.
	Disposition string
	// Length is the announced length, -1 when unknown.
	Length int64
	// Body is the content; reading past the caller's limit fails with
	// outbound.ErrTooLarge.
	Body io.Reader
}

// Media limits: the metadata part is an empty object today; the media
// answer may take its time (a large file over a slow link).
const (
	maxMediaMetadata = 64 << 10
	mediaTimeout     = 5 * time.Minute
	maxMediaRedirect = 5
)

// ErrMediaAnswer is a media answer this client cannot read: not
// multipart/mixed, parts missing, a Location it may not follow.
var ErrMediaAnswer = errors.New("fedclient: unusable media answer")

// DownloadMedia asks GET /_matrix/federation/v1/media/download/{mediaId}
// of dest (Server-Server API, "Content repository", v1.11) and hands fn
// the content: the second part of the multipart/mixed answer, or what its
// Location leads to. A Location is followed only over https, to a host the
// closed circle allows (any public host in open federation), through
// internal/outbound's address policy, without our signature (the URL is
// not a Matrix server's). The content is at most maxBytes.
func (c *Client) DownloadMedia(ctx context.Context, dest, mediaID string, timeoutMS int64, maxBytes int64, fn func(*Media) error) error {
	q := url.Values{"timeout_ms": {strconv.FormatInt(timeoutMS, 10)}}
	return c.media(ctx, dest, "/_matrix/federation/v1/media/download/"+esc(mediaID), q, maxBytes, fn)
}

// DownloadMediaLegacy asks dest for its media the way servers did before the
// authenticated federation endpoint (spec v1.11): GET
// /_matrix/media/v3/download/{origin}/{mediaId}?allow_remote=false on its
// federation address; the answer is the content itself. For servers that do
// not serve /_matrix/federation/v1/media/download (FetchMedia falls back to
// it as Synapse does). Redirects are not followed.
func (c *Client) DownloadMediaLegacy(ctx context.Context, dest, mediaID string, timeoutMS int64, maxBytes int64, fn func(*Media) error) error {
	q := url.Values{"allow_remote": {"false"}, "timeout_ms": {strconv.FormatInt(timeoutMS, 10)}}
	return c.do(ctx, request{method: http.MethodGet, dest: dest, path: "/_matrix/media/v3/download/" + esc(dest) + "/" + esc(mediaID), query: q, timeout: mediaTimeout,
		stream: func(res *http.Response) error {
			return fn(&Media{ContentType: res.Header.Get("Content-Type"), Disposition: res.Header.Get("Content-Disposition"),
				Length: res.ContentLength, Body: outbound.LimitBody(res.Body, maxBytes)})
		}})
}

// ThumbnailMedia asks GET /_matrix/federation/v1/media/thumbnail/{mediaId}
// (query: width, height, method, animated, timeout_ms) like DownloadMedia.
func (c *Client) ThumbnailMedia(ctx context.Context, dest, mediaID string, query url.Values, maxBytes int64, fn func(*Media) error) error {
	return c.media(ctx, dest, "/_matrix/federation/v1/media/thumbnail/"+esc(mediaID), query, maxBytes, fn)
}

func (c *Client) media(ctx context.Context, dest, path string, q url.Values, maxBytes int64, fn func(*Media) error) error {
	return c.do(ctx, request{method: http.MethodGet, dest: dest, path: path, query: q, timeout: mediaTimeout,
		stream: func(res *http.Response) error { return c.readMediaAnswer(res, maxBytes, fn) }})
}

func (c *Client) readMediaAnswer(res *http.Response, maxBytes int64, fn func(*Media) error) error {
	mt, params, err := mime.ParseMediaType(res.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" || params["boundary"] == "" {
		return fmt.Errorf("%w: Content-Type %q is not multipart/mixed with a boundary", ErrMediaAnswer, res.Header.Get("Content-Type"))
	}
	// The whole answer is bounded: the content, and some room for the
	// metadata part and the part headers.
	mr := multipart.NewReader(outbound.LimitBody(res.Body, maxBytes+maxMediaMetadata+64<<10), params["boundary"])
	meta, err := mr.NextPart()
	if err != nil {
		return fmt.Errorf("%w: metadata part: %w", ErrMediaAnswer, err)
	}
	raw, err := outbound.ReadBody(meta, maxMediaMetadata)
	var obj map[string]json.RawMessage
	if err != nil || json.Unmarshal(raw, &obj) != nil || obj == nil {
		return fmt.Errorf("%w: the metadata part is not a JSON object", ErrMediaAnswer)
	}
	part, err := mr.NextPart()
	if err != nil {
		return fmt.Errorf("%w: content part: %w", ErrMediaAnswer, err)
	}
	if loc := part.Header.Get("Location"); loc != "" {
		return c.followMediaLocation(res.Request.Context(), loc, maxBytes, fn)
	}
	length := int64(-1)
	if v := part.Header.Get("Content-Length"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			length = n
		}
	}
	return fn(&Media{ContentType: part.Header.Get("Content-Type"), Disposition: part.Header.Get("Content-Disposition"),
		Length: length, Body: outbound.LimitBody(part, maxBytes)})
}

// mediaURLAllowed is the rule for every hop of a Location: https only (a
// redirect must not downgrade what federation protects with TLS), and in a
// closed circle only hosts the operator named.
func (c *Client) mediaURLAllowed(u *url.URL) error {
	if u.Scheme != "https" || u.Host == "" || u.User != nil {
		return fmt.Errorf("%w: Location %s is not an https URL", ErrMediaAnswer, u.Redacted())
	}
	if c.allow.Open() || c.allow.Allowed(u.Host) || c.allow.Allowed(u.Hostname()) {
		return nil
	}
	return c.allow.Check(u.Host)
}

func (c *Client) followMediaLocation(ctx context.Context, loc string, maxBytes int64, fn func(*Media) error) error {
	u, err := url.Parse(loc)
	if err != nil {
		return fmt.Errorf("%w: Location is not a URL", ErrMediaAnswer)
	}
	if err := c.mediaURLAllowed(u); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMediaAnswer, err)
	}
	req.Header.Set("User-Agent", "Conclave")
	hc := c.out.Redirecting(maxMediaRedirect, func(next *http.Request) error { return c.mediaURLAllowed(next.URL) })
	res, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("fedclient: media at %s: %w", u.Redacted(), err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return &Error{Destination: u.Host, Method: http.MethodGet, Path: u.Path, Status: res.StatusCode}
	}
	return fn(&Media{ContentType: res.Header.Get("Content-Type"), Disposition: res.Header.Get("Content-Disposition"),
		Length: res.ContentLength, Body: outbound.LimitBody(res.Body, maxBytes)})
}
