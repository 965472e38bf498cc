-- Media repository: local content metadata, thumbnails, antivirus verdicts.
-- File bytes live on disk (or another Storage) addressed by sha256.

CREATE TABLE media (
    media_id     TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    content_type TEXT NOT NULL DEFAULT '',
    filename     TEXT NOT NULL DEFAULT '',
    size         BIGINT NOT NULL DEFAULT 0,
    sha256       TEXT,               -- NULL until the content is uploaded
    created_ts   BIGINT NOT NULL,
    uploaded_ts  BIGINT NOT NULL DEFAULT 0,
    quarantined  BOOLEAN NOT NULL DEFAULT false,
    scan_status  TEXT NOT NULL DEFAULT '',
    restricted   BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX media_sha256 ON media (sha256) WHERE sha256 IS NOT NULL;
CREATE INDEX media_pending ON media (user_id, created_ts) WHERE sha256 IS NULL;

CREATE TABLE media_thumbnails (
    media_id      TEXT NOT NULL REFERENCES media (media_id) ON DELETE CASCADE,
    width         INTEGER NOT NULL,
    height        INTEGER NOT NULL,
    method        TEXT NOT NULL,
    actual_width  INTEGER NOT NULL,
    actual_height INTEGER NOT NULL,
    content_type  TEXT NOT NULL,
    size          BIGINT NOT NULL,
    sha256        TEXT NOT NULL,
    PRIMARY KEY (media_id, width, height, method)
);
CREATE INDEX media_thumbnails_sha256 ON media_thumbnails (sha256);

-- Antivirus verdicts by content hash, so identical content is scanned once.
CREATE TABLE media_scan_results (
    sha256     TEXT PRIMARY KEY,
    status     TEXT NOT NULL,
    signature  TEXT NOT NULL DEFAULT '',
    scanned_ts BIGINT NOT NULL
);
