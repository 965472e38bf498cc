package sqlstore

import (
	"context"

	"conclave/internal/store"
)

const mediaCols = `media_id, user_id, content_type, filename, size, coalesce(sha256, ''), created_ts, uploaded_ts, quarantined, scan_status, restricted, origin, remote_id`

func (s *Shared) CreateMedia(ctx context.Context, m *store.Media) error {
	var sha *string // NULL until the content is uploaded
	if m.SHA256 != "" {
		sha = &m.SHA256
	}
	_, err := s.b.Write().Exec(ctx, `INSERT INTO media (media_id, user_id, content_type, filename, size, sha256, created_ts, uploaded_ts, quarantined, scan_status, restricted, origin, remote_id)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		m.MediaID, m.UserID, m.ContentType, m.Filename, m.Size, sha, m.CreatedTS, m.UploadedTS, m.Quarantined, m.ScanStatus, m.Restricted, m.Origin, m.RemoteID)
	if s.b.IsUnique(err) {
		return store.ErrConflict
	}
	return err
}

func (s *Shared) GetMedia(ctx context.Context, mediaID string) (*store.Media, error) {
	return scanMedia(s.b.Read().QueryRow(ctx, `SELECT `+mediaCols+` FROM media WHERE media_id = ?`, mediaID))
}

func (s *Shared) GetRemoteMedia(ctx context.Context, origin, remoteID string) (*store.Media, error) {
	if origin == "" {
		return nil, store.ErrNotFound
	}
	return scanMedia(s.b.Read().QueryRow(ctx, `SELECT `+mediaCols+` FROM media WHERE origin = ? AND remote_id = ?`, origin, remoteID))
}

func scanMedia(row Row) (*store.Media, error) {
	var m store.Media
	err := row.Scan(&m.MediaID, &m.UserID, &m.ContentType, &m.Filename, &m.Size, &m.SHA256, &m.CreatedTS, &m.UploadedTS, &m.Quarantined, &m.ScanStatus, &m.Restricted, &m.Origin, &m.RemoteID)
	if err != nil {
		return nil, notFound(err)
	}
	return &m, nil
}

func (s *Shared) CompleteMedia(ctx context.Context, m *store.Media) error {
	return s.b.Tx(ctx, func(tx Querier) error {
		n, err := tx.Exec(ctx, `UPDATE media SET content_type = ?, filename = ?, size = ?, sha256 = ?, uploaded_ts = ?, scan_status = ?, restricted = ?
			WHERE media_id = ? AND sha256 IS NULL`,
			m.ContentType, m.Filename, m.Size, m.SHA256, m.UploadedTS, m.ScanStatus, m.Restricted, m.MediaID)
		if err != nil {
			return err
		}
		if n == 1 {
			return nil
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM media WHERE media_id = ?)`, m.MediaID).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			return store.ErrNotFound
		}
		return store.ErrConflict
	})
}

func (s *Shared) CountPendingMedia(ctx context.Context, userID string, sinceTS int64) (int, error) {
	var n int
	err := s.b.Read().QueryRow(ctx, `SELECT count(*) FROM media WHERE user_id = ? AND sha256 IS NULL AND created_ts >= ?`, userID, sinceTS).Scan(&n)
	return n, err
}

func (s *Shared) SetMediaQuarantined(ctx context.Context, mediaID string, quarantined bool) error {
	n, err := s.b.Write().Exec(ctx, `UPDATE media SET quarantined = ? WHERE media_id = ?`, quarantined, mediaID)
	if err != nil {
		return err
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}

func (s *Shared) DeleteMedia(ctx context.Context, mediaID string) ([]string, error) {
	var hashes []string
	err := s.b.Tx(ctx, func(tx Querier) error {
		var err error
		hashes, err = queryStrings(ctx, tx, `SELECT sha256 FROM media WHERE media_id = ?1 AND sha256 IS NOT NULL
			UNION SELECT sha256 FROM media_thumbnails WHERE media_id = ?1`, mediaID)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM media_thumbnails WHERE media_id = ?`, mediaID); err != nil {
			return err
		}
		n, err := tx.Exec(ctx, `DELETE FROM media WHERE media_id = ?`, mediaID)
		if err != nil {
			return err
		}
		if n == 0 {
			return store.ErrNotFound
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return hashes, nil
}

func (s *Shared) PutThumbnail(ctx context.Context, t *store.Thumbnail) error {
	_, err := s.b.Write().Exec(ctx, `INSERT INTO media_thumbnails (media_id, width, height, method, actual_width, actual_height, content_type, size, sha256)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (media_id, width, height, method) DO UPDATE SET actual_width = excluded.actual_width, actual_height = excluded.actual_height,
			content_type = excluded.content_type, size = excluded.size, sha256 = excluded.sha256`,
		t.MediaID, t.Width, t.Height, t.Method, t.ActualWidth, t.ActualHeight, t.ContentType, t.Size, t.SHA256)
	if s.b.IsForeignKey(err) {
		// The media row was deleted meanwhile.
		return store.ErrNotFound
	}
	return err
}

func (s *Shared) GetThumbnails(ctx context.Context, mediaID string) ([]store.Thumbnail, error) {
	rows, err := s.b.Read().Query(ctx, `SELECT media_id, width, height, method, actual_width, actual_height, content_type, size, sha256
		FROM media_thumbnails WHERE media_id = ? ORDER BY width, height, method`+s.d.Collate, mediaID)
	return collect(rows, err, func(r Rows, t *store.Thumbnail) error {
		return r.Scan(&t.MediaID, &t.Width, &t.Height, &t.Method, &t.ActualWidth, &t.ActualHeight, &t.ContentType, &t.Size, &t.SHA256)
	})
}

func (s *Shared) ReferencedHashes(ctx context.Context, hashes []string) (map[string]bool, error) {
	out := make(map[string]bool, len(hashes))
	for len(hashes) > 0 {
		n := min(len(hashes), s.d.Chunk(2))
		inMedia, args := s.d.In("sha256", hashes[:n], nil)
		inThumbs, args := s.d.In("sha256", hashes[:n], args)
		found, err := queryStrings(ctx, s.b.Read(), `SELECT sha256 FROM media WHERE `+inMedia+`
			UNION SELECT sha256 FROM media_thumbnails WHERE `+inThumbs, args...)
		if err != nil {
			return nil, err
		}
		for _, h := range found {
			out[h] = true
		}
		hashes = hashes[n:]
	}
	return out, nil
}

func (s *Shared) GetScanResult(ctx context.Context, sha256 string) (*store.ScanResult, error) {
	r := store.ScanResult{SHA256: sha256}
	err := s.b.Read().QueryRow(ctx, `SELECT status, signature, scanned_ts FROM media_scan_results WHERE sha256 = ?`, sha256).Scan(&r.Status, &r.Signature, &r.ScannedTS)
	if err != nil {
		return nil, notFound(err)
	}
	return &r, nil
}

func (s *Shared) PutScanResult(ctx context.Context, r *store.ScanResult) error {
	_, err := s.b.Write().Exec(ctx, `INSERT INTO media_scan_results (sha256, status, signature, scanned_ts) VALUES (?, ?, ?, ?)
		ON CONFLICT (sha256) DO UPDATE SET status = excluded.status, signature = excluded.signature, scanned_ts = excluded.scanned_ts`,
		r.SHA256, r.Status, r.Signature, r.ScannedTS)
	return err
}
