package store

import "context"

// Media is one piece of local or cached remote content in the media repository. Content is
// addressed by SHA256 (lower-case hex); identical uploads share one file.
// A row created by POST /_matrix/media/v1/create has no content yet:
// SHA256 is "" and UploadedTS is 0 until the PUT completes it.
type Media struct {
	MediaID     string
	UserID      string
	ContentType string
	Filename    string
	Size        int64
	SHA256      string
	CreatedTS   int64
	UploadedTS  int64
	Quarantined bool
	// ScanStatus is the antivirus verdict at upload: ScanNone (no scanner
	// configured), ScanClean, or ScanUnscanned (scanner unreachable and the
	// server was told to accept anyway). Infected content is never stored.
	ScanStatus string
	// Restricted media were uploaded while the legacy-media freeze was on:
	// the deprecated unauthenticated endpoints answer 404 for them.
	Restricted bool
	// Origin and RemoteID name remote media cached here: the server and
	// media ID of its mxc URI (MediaID is then one of ours, never served
	// as local media). Both are "" for local media.
	Origin   string
	RemoteID string
}

// Scan statuses kept in Media.ScanStatus and the scan cache.
const (
	ScanNone      = ""
	ScanClean     = "clean"
	ScanInfected  = "infected"
	ScanUnscanned = "unscanned"
)

// Thumbnail is one generated thumbnail of a Media, stored by content hash
// like the originals. Width/Height/Method name the size it was made for
// (one of the recommended sizes); ActualWidth/ActualHeight are its pixels.
type Thumbnail struct {
	MediaID      string
	Width        int
	Height       int
	Method       string // "crop" or "scale"
	ActualWidth  int
	ActualHeight int
	ContentType  string
	Size         int64
	SHA256       string
}

// ScanResult is a cached antivirus verdict for one content hash.
type ScanResult struct {
	SHA256    string
	Status    string // ScanClean or ScanInfected
	Signature string
	ScannedTS int64
}

// MediaStore keeps media metadata, thumbnails and antivirus verdicts.
type MediaStore interface {
	// CreateMedia inserts a row (ErrConflict if the media ID exists).
	CreateMedia(ctx context.Context, m *Media) error
	GetMedia(ctx context.Context, mediaID string) (*Media, error)
	// GetRemoteMedia returns the cached copy of origin's mediaID (with or
	// without content: a quarantine may come before the content).
	// ErrNotFound if there is none. CreateMedia with the same Origin and
	// RemoteID is ErrConflict.
	GetRemoteMedia(ctx context.Context, origin, remoteID string) (*Media, error)
	// CompleteMedia gives content to a row created without it. ErrNotFound
	// if the row is missing, ErrConflict if it already has content.
	CompleteMedia(ctx context.Context, m *Media) error
	// CountPendingMedia counts userID's rows without content created at or
	// after sinceTS.
	CountPendingMedia(ctx context.Context, userID string, sinceTS int64) (int, error)
	// SetMediaQuarantined sets the flag; ErrNotFound if the row is missing.
	SetMediaQuarantined(ctx context.Context, mediaID string, quarantined bool) error
	// DeleteMedia removes the row and its thumbnails in one transaction and
	// returns the content hashes they referenced (the caller deletes files
	// nothing references any more). ErrNotFound if the row is missing.
	DeleteMedia(ctx context.Context, mediaID string) ([]string, error)

	// PutThumbnail records a thumbnail (replacing one of the same size).
	PutThumbnail(ctx context.Context, t *Thumbnail) error
	GetThumbnails(ctx context.Context, mediaID string) ([]Thumbnail, error)

	// ReferencedHashes returns which of hashes (at most 500) a media or
	// thumbnail row references.
	ReferencedHashes(ctx context.Context, hashes []string) (map[string]bool, error)

	GetScanResult(ctx context.Context, sha256 string) (*ScanResult, error)
	PutScanResult(ctx context.Context, r *ScanResult) error
}
