CREATE TABLE profiles (
    user_id     TEXT PRIMARY KEY,
    displayname TEXT NOT NULL DEFAULT '',
    avatar_url  TEXT NOT NULL DEFAULT ''
);
