-- Single sign-on (internal/sso): logins begun at the identity provider, kept
-- until its callback, and login tokens (m.login.token). Only hashes of the
-- state, the browser cookie and the login token are stored; both are taken
-- once and expire within minutes.
CREATE TABLE sso_attempts (
    state_hash   BLOB PRIMARY KEY,
    browser_hash BLOB NOT NULL,
    nonce        TEXT NOT NULL,
    verifier     TEXT NOT NULL,
    idp          TEXT NOT NULL,
    redirect_url TEXT NOT NULL,
    expires_ts   INTEGER NOT NULL
);
CREATE INDEX sso_attempts_expires ON sso_attempts (expires_ts);

CREATE TABLE login_tokens (
    token_hash BLOB PRIMARY KEY,
    user_id    TEXT NOT NULL,
    expires_ts INTEGER NOT NULL
);
CREATE INDEX login_tokens_expires ON login_tokens (expires_ts);
