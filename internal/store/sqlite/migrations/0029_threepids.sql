-- E-mail addresses (internal/threepid): validation sessions started by
-- requestToken and validated by the mailed token, and the addresses bound
-- to accounts.
CREATE TABLE threepid_sessions (
    sid              TEXT PRIMARY KEY,
    client_secret    TEXT NOT NULL,
    medium           TEXT NOT NULL,
    address          TEXT NOT NULL,
    purpose          TEXT NOT NULL,
    send_attempt     INTEGER NOT NULL,
    token_hash       BLOB NOT NULL,
    failures         INTEGER NOT NULL DEFAULT 0,
    created_ts       INTEGER NOT NULL,
    token_expires_ts INTEGER NOT NULL,
    expires_ts       INTEGER NOT NULL,
    validated_ts     INTEGER NOT NULL DEFAULT 0,
    UNIQUE (client_secret, medium, address, purpose)
);
CREATE INDEX threepid_sessions_expiry ON threepid_sessions (expires_ts);

-- An address is bound to at most one account.
CREATE TABLE user_threepids (
    medium       TEXT NOT NULL,
    address      TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    validated_ts INTEGER NOT NULL,
    added_ts     INTEGER NOT NULL,
    lookup_hash  TEXT NOT NULL,
    PRIMARY KEY (medium, address)
);
CREATE INDEX user_threepids_user ON user_threepids (user_id);
CREATE INDEX user_threepids_lookup ON user_threepids (lookup_hash);
