-- Refresh tokens that were exchanged but stay usable until the pair that
-- replaced them is first used (Client-Server API, POST /refresh): a client
-- that lost the /refresh response can retry with the old refresh token.
CREATE TABLE superseded_refresh_tokens (
    refresh_hash   BYTEA PRIMARY KEY,
    successor_hash BYTEA NOT NULL, -- access_tokens.token_hash of the replacing pair
    user_id        TEXT NOT NULL,
    device_id      TEXT NOT NULL
);
CREATE INDEX superseded_refresh_successor ON superseded_refresh_tokens (successor_hash);
CREATE INDEX superseded_refresh_device ON superseded_refresh_tokens (user_id, device_id);
