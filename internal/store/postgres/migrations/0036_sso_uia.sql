-- Single sign-on for user-interactive authentication (m.login.sso through
-- the fallback page): an attempt begun there names the UIA session it
-- completes and the user that session belongs to; a login attempt has ''.
ALTER TABLE sso_attempts ADD COLUMN uia_session TEXT NOT NULL DEFAULT '';
ALTER TABLE sso_attempts ADD COLUMN user_id TEXT NOT NULL DEFAULT '';

-- User-interactive authentication sessions that offer m.login.sso, shared by
-- the processes of a cluster: the fallback page, the provider's callback and
-- the client's repeated request may each reach another process. completed is
-- set by the callback (for the session's own user only); the repeated
-- request takes the row once.
CREATE TABLE uia_sso_sessions (
    session_id TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    purpose    TEXT NOT NULL,
    completed  BOOLEAN NOT NULL DEFAULT false,
    expires_ts BIGINT NOT NULL
);
CREATE INDEX uia_sso_sessions_expires ON uia_sso_sessions (expires_ts);
