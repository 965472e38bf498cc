package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"conclave/internal/store"
)

const mediaCols = `media_id, user_id, content_type, filename, size, coalesce(sha256, ''), created_ts, uploaded_ts, quarantined, scan_status, restricted`

// nullString is s, or NULL when s is empty.
func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (db *DB) CreateMedia(ctx context.Context, m *store.Media) error {
	_, err := db.pool.Exec(ctx, `INSERT INTO media (media_id, user_id, content_type, filename, size, sha256, created_ts, uploaded_ts, quarantined, scan_status, restricted)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		m.MediaID, m.UserID, m.ContentType, m.Filename, m.Size, nullString(m.SHA256), m.CreatedTS, m.UploadedTS, m.Quarantined, m.ScanStatus, m.Restricted)
	if isConstraint(err) {
		return store.ErrConflict
	}
	return err
}

func (db *DB) GetMedia(ctx context.Context, mediaID string) (*store.Media, error) {
	var m store.Media
	err := db.pool.QueryRow(ctx, `SELECT `+mediaCols+` FROM media WHERE media_id = $1`, mediaID).
		Scan(&m.MediaID, &m.UserID, &m.ContentType, &m.Filename, &m.Size, &m.SHA256, &m.CreatedTS, &m.UploadedTS, &m.Quarantined, &m.ScanStatus, &m.Restricted)
	if err != nil {
		return nil, notFound(err)
	}
	return &m, nil
}

func (db *DB) CompleteMedia(ctx context.Context, m *store.Media) error {
	return db.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE media SET content_type = $1, filename = $2, size = $3, sha256 = $4, uploaded_ts = $5, scan_status = $6, restricted = $7
			WHERE media_id = $8 AND sha256 IS NULL`,
			m.ContentType, m.Filename, m.Size, m.SHA256, m.UploadedTS, m.ScanStatus, m.Restricted, m.MediaID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 1 {
			return nil
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM media WHERE media_id = $1)`, m.MediaID).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			return store.ErrNotFound
		}
		return store.ErrConflict
	})
}

func (db *DB) CountPendingMedia(ctx context.Context, userID string, sinceTS int64) (int, error) {
	var n int
	err := db.pool.QueryRow(ctx, `SELECT count(*) FROM media WHERE user_id = $1 AND sha256 IS NULL AND created_ts >= $2`, userID, sinceTS).Scan(&n)
	return n, err
}

func (db *DB) SetMediaQuarantined(ctx context.Context, mediaID string, quarantined bool) error {
	tag, err := db.pool.Exec(ctx, `UPDATE media SET quarantined = $1 WHERE media_id = $2`, quarantined, mediaID)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return store.ErrNotFound
	}
	return nil
}

func (db *DB) DeleteMedia(ctx context.Context, mediaID string) ([]string, error) {
	var hashes []string
	err := db.tx(ctx, func(tx pgx.Tx) error {
		var err error
		hashes, err = queryStrings(ctx, tx, `SELECT sha256 FROM media WHERE media_id = $1 AND sha256 IS NOT NULL
			UNION SELECT sha256 FROM media_thumbnails WHERE media_id = $1`, mediaID)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM media_thumbnails WHERE media_id = $1`, mediaID); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM media WHERE media_id = $1`, mediaID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return hashes, nil
}

func (db *DB) PutThumbnail(ctx context.Context, t *store.Thumbnail) error {
	_, err := db.pool.Exec(ctx, `INSERT INTO media_thumbnails (media_id, width, height, method, actual_width, actual_height, content_type, size, sha256)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (media_id, width, height, method) DO UPDATE SET actual_width = excluded.actual_width, actual_height = excluded.actual_height,
			content_type = excluded.content_type, size = excluded.size, sha256 = excluded.sha256`,
		t.MediaID, t.Width, t.Height, t.Method, t.ActualWidth, t.ActualHeight, t.ContentType, t.Size, t.SHA256)
	if isForeignKey(err) {
		return store.ErrNotFound
	}
	return err
}

func (db *DB) GetThumbnails(ctx context.Context, mediaID string) ([]store.Thumbnail, error) {
	rows, err := db.pool.Query(ctx, `SELECT media_id, width, height, method, actual_width, actual_height, content_type, size, sha256
		FROM media_thumbnails WHERE media_id = $1 ORDER BY width, height, method COLLATE "C"`, mediaID)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Thumbnail, error) {
		var t store.Thumbnail
		err := row.Scan(&t.MediaID, &t.Width, &t.Height, &t.Method, &t.ActualWidth, &t.ActualHeight, &t.ContentType, &t.Size, &t.SHA256)
		return t, err
	})
	if len(out) == 0 {
		out = nil
	}
	return out, err
}

func (db *DB) ReferencedHashes(ctx context.Context, hashes []string) (map[string]bool, error) {
	out := make(map[string]bool, len(hashes))
	for len(hashes) > 0 {
		n := min(len(hashes), maxInArgs)
		found, err := queryStrings(ctx, db.pool, `SELECT sha256 FROM media WHERE sha256 = ANY($1)
			UNION SELECT sha256 FROM media_thumbnails WHERE sha256 = ANY($1)`, hashes[:n])
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

func (db *DB) GetScanResult(ctx context.Context, sha256 string) (*store.ScanResult, error) {
	r := store.ScanResult{SHA256: sha256}
	err := db.pool.QueryRow(ctx, `SELECT status, signature, scanned_ts FROM media_scan_results WHERE sha256 = $1`, sha256).Scan(&r.Status, &r.Signature, &r.ScannedTS)
	if err != nil {
		return nil, notFound(err)
	}
	return &r, nil
}

func (db *DB) PutScanResult(ctx context.Context, r *store.ScanResult) error {
	_, err := db.pool.Exec(ctx, `INSERT INTO media_scan_results (sha256, status, signature, scanned_ts) VALUES ($1, $2, $3, $4)
		ON CONFLICT (sha256) DO UPDATE SET status = excluded.status, signature = excluded.signature, scanned_ts = excluded.scanned_ts`,
		r.SHA256, r.Status, r.Signature, r.ScannedTS)
	return err
}
