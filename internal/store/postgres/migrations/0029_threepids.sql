-- E-mail addresses (internal/threepid): validation sessions started by
-- requestToken and validated by the mailed token, and the addresses bound
-- to accounts.
CREATE TABLE threepid_sessions (
    sid              TEXT PRIMARY KEY,
    client_secret    TEXT NOT NULL,
    medium           TEXT NOT NULL,
    address          TEXT NOT NULL,
    purpose          TEXT NOT NULL,
    send_attempt     BIGINT NOT NULL,
    token_hash       BYTEA NOT NULL,
    failures         BIGINT NOT NULL DEFAULT 0,
    created_ts       BIGINT NOT NULL,
    token_expires_ts BIGINT NOT NULL,
    expires_ts       BIGINT NOT NULL,
    validated_ts     BIGINT NOT NULL DEFAULT 0,
    UNIQUE (client_secret, medium, address, purpose)
);
CREATE INDEX threepid_sessions_expiry ON threepid_sessions (expires_ts);

-- An address is bound to at most one account.
CREATE TABLE user_threepids (
    medium       TEXT NOT NULL,
    address      TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    validated_ts BIGINT NOT NULL,
    added_ts     BIGINT NOT NULL,
    lookup_hash  TEXT NOT NULL,
    PRIMARY KEY (medium, address)
);
CREATE INDEX user_threepids_user ON user_threepids (user_id);
CREATE INDEX user_threepids_lookup ON user_threepids (lookup_hash);
