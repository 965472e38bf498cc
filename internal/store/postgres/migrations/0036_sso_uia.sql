-- Single sign-on for user-interactive authentication (m.login.sso through
-- the fallback page): an attempt begun there names the UIA session it
-- completes and the user that session belongs to; a login attempt has ''.
ALTER TABLE sso_attempts ADD COLUMN uia_session TEXT NOT NULL DEFAULT '';
ALTER TABLE sso_attempts ADD COLUMN user_id TEXT NOT NULL DEFAULT '';
