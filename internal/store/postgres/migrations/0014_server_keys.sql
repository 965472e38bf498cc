-- Other servers' signing keys (internal/keyring), and this server's own old
-- keys after `conclave admin rotate-key`: one row per (server, key ID).
CREATE TABLE server_keys (
    server_name    TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    public_key     TEXT NOT NULL,              -- unpadded base64
    valid_until_ts BIGINT NOT NULL DEFAULT 0,  -- verify_keys: usable up to this time (ms)
    expired_ts     BIGINT NOT NULL DEFAULT 0,  -- old_verify_keys: usable before this time; 0 = current
    fetched_ts     BIGINT NOT NULL,
    PRIMARY KEY (server_name, key_id)
);

-- The last signed key response of each server, as it sent it: the notary
-- (/_matrix/key/v2/query) countersigns and serves it, also while the server
-- is unreachable.
CREATE TABLE server_key_responses (
    server_name    TEXT PRIMARY KEY,
    valid_until_ts BIGINT NOT NULL,
    fetched_ts     BIGINT NOT NULL,
    response       TEXT NOT NULL
);
