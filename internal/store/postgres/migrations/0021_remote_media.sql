-- Remote media cached here (fetched over federation for our clients): a row
-- in media like a local upload, under a media ID of our own minting, with
-- the server and media ID it came from. Local media have origin ''.
-- Thumbnails, antivirus verdicts, quarantine and the content-addressed files
-- work the same for both.
ALTER TABLE media ADD COLUMN origin TEXT NOT NULL DEFAULT '';
ALTER TABLE media ADD COLUMN remote_id TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX media_remote ON media (origin, remote_id) WHERE origin <> '';
