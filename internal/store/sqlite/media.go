package sqlite

import (
	"context"
	"errors"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"conclave/internal/store"
)

const mediaCols = `media_id, user_id, content_type, filename, size, coalesce(sha256, ''), created_ts, uploaded_ts, quarantined, scan_status, restricted`

func (db *DB) CreateMedia(ctx context.Context, m *store.Media) error {
	var sha any
	if m.SHA256 != "" {
		sha = m.SHA256
	}
	_, err := db.w.ExecContext(ctx, `INSERT INTO media (media_id, user_id, content_type, filename, size, sha256, created_ts, uploaded_ts, quarantined, scan_status, restricted)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		m.MediaID, m.UserID, m.ContentType, m.Filename, m.Size, sha, m.CreatedTS, m.UploadedTS, boolInt(m.Quarantined), m.ScanStatus, boolInt(m.Restricted))
	if isConstraint(err) {
		return store.ErrConflict
	}
	return err
}

func (db *DB) GetMedia(ctx context.Context, mediaID string) (*store.Media, error) {
	var m store.Media
	err := db.r.QueryRowContext(ctx, `SELECT `+mediaCols+` FROM media WHERE media_id = ?`, mediaID).
		Scan(&m.MediaID, &m.UserID, &m.ContentType, &m.Filename, &m.Size, &m.SHA256, &m.CreatedTS, &m.UploadedTS, &m.Quarantined, &m.ScanStatus, &m.Restricted)
	if err != nil {
		return nil, notFound(err)
	}
	return &m, nil
}

func (db *DB) CompleteMedia(ctx context.Context, m *store.Media) error {
	return db.tx(ctx, func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE media SET content_type = ?, filename = ?, size = ?, sha256 = ?, uploaded_ts = ?, scan_status = ?, restricted = ?
			WHERE media_id = ? AND sha256 IS NULL`,
			m.ContentType, m.Filename, m.Size, m.SHA256, m.UploadedTS, m.ScanStatus, boolInt(m.Restricted), m.MediaID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return nil
		}
		var one int
		if err := tx.QueryRowContext(ctx, `SELECT 1 FROM media WHERE media_id = ?`, m.MediaID).Scan(&one); err != nil {
			return notFound(err)
		}
		return store.ErrConflict
	})
}

func (db *DB) CountPendingMedia(ctx context.Context, userID string, sinceTS int64) (int, error) {
	var n int
	err := db.r.QueryRowContext(ctx, `SELECT count(*) FROM media WHERE user_id = ? AND sha256 IS NULL AND created_ts >= ?`, userID, sinceTS).Scan(&n)
	return n, err
}

func (db *DB) SetMediaQuarantined(ctx context.Context, mediaID string, quarantined bool) error {
	res, err := db.w.ExecContext(ctx, `UPDATE media SET quarantined = ? WHERE media_id = ?`, boolInt(quarantined), mediaID)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.ErrNotFound
	}
	return nil
}

func (db *DB) DeleteMedia(ctx context.Context, mediaID string) ([]string, error) {
	var hashes []string
	err := db.tx(ctx, func(tx *Tx) error {
		var err error
		hashes, err = queryStrings(ctx, tx, `SELECT sha256 FROM media WHERE media_id = ? AND sha256 IS NOT NULL
			UNION SELECT sha256 FROM media_thumbnails WHERE media_id = ?`, mediaID, mediaID)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM media_thumbnails WHERE media_id = ?`, mediaID); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM media WHERE media_id = ?`, mediaID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
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
	_, err := db.w.ExecContext(ctx, `INSERT INTO media_thumbnails (media_id, width, height, method, actual_width, actual_height, content_type, size, sha256)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (media_id, width, height, method) DO UPDATE SET actual_width = excluded.actual_width, actual_height = excluded.actual_height,
			content_type = excluded.content_type, size = excluded.size, sha256 = excluded.sha256`,
		t.MediaID, t.Width, t.Height, t.Method, t.ActualWidth, t.ActualHeight, t.ContentType, t.Size, t.SHA256)
	if isMediaForeignKey(err) {
		return store.ErrNotFound
	}
	return err
}

func (db *DB) GetThumbnails(ctx context.Context, mediaID string) ([]store.Thumbnail, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT media_id, width, height, method, actual_width, actual_height, content_type, size, sha256
		FROM media_thumbnails WHERE media_id = ? ORDER BY width, height, method`, mediaID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Thumbnail
	for rows.Next() {
		var t store.Thumbnail
		if err := rows.Scan(&t.MediaID, &t.Width, &t.Height, &t.Method, &t.ActualWidth, &t.ActualHeight, &t.ContentType, &t.Size, &t.SHA256); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

func (db *DB) ReferencedHashes(ctx context.Context, hashes []string) (map[string]bool, error) {
	out := make(map[string]bool, len(hashes))
	for len(hashes) > 0 {
		n := min(len(hashes), maxInArgs/2)
		args := stringArgs(hashes[:n])
		args = append(args, args...)
		ph := placeholders(n)
		rows, err := db.r.QueryContext(ctx, `SELECT sha256 FROM media WHERE sha256 IN (`+ph+`)
			UNION SELECT sha256 FROM media_thumbnails WHERE sha256 IN (`+ph+`)`, args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var h string
			if err := rows.Scan(&h); err != nil {
				rows.Close()
				return nil, err
			}
			out[h] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		hashes = hashes[n:]
	}
	return out, nil
}

func (db *DB) GetScanResult(ctx context.Context, sha256 string) (*store.ScanResult, error) {
	r := store.ScanResult{SHA256: sha256}
	err := db.r.QueryRowContext(ctx, `SELECT status, signature, scanned_ts FROM media_scan_results WHERE sha256 = ?`, sha256).Scan(&r.Status, &r.Signature, &r.ScannedTS)
	if err != nil {
		return nil, notFound(err)
	}
	return &r, nil
}

func (db *DB) PutScanResult(ctx context.Context, r *store.ScanResult) error {
	_, err := db.w.ExecContext(ctx, `INSERT INTO media_scan_results (sha256, status, signature, scanned_ts) VALUES (?, ?, ?, ?)
		ON CONFLICT (sha256) DO UPDATE SET status = excluded.status, signature = excluded.signature, scanned_ts = excluded.scanned_ts`,
		r.SHA256, r.Status, r.Signature, r.ScannedTS)
	return err
}

// isMediaForeignKey reports a foreign-key violation (a thumbnail for a media
// row deleted meanwhile).
func isMediaForeignKey(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
}
