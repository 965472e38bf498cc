-- Core schema: the global stream, accounts, rooms, events, state, memberships.

-- One global stream position: every change /sync reports takes the next one.
CREATE TABLE stream (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    pos INTEGER NOT NULL
);
INSERT INTO stream (id, pos) VALUES (1, 0);

CREATE TABLE users (
    user_id       TEXT PRIMARY KEY,
    user_id_lower TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL DEFAULT '',
    is_admin      INTEGER NOT NULL DEFAULT 0,
    is_guest      INTEGER NOT NULL DEFAULT 0,
    deactivated   INTEGER NOT NULL DEFAULT 0,
    created_ts    INTEGER NOT NULL
);

CREATE TABLE devices (
    user_id      TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    display_name TEXT,
    created_ts   INTEGER NOT NULL,
    last_seen_ts INTEGER NOT NULL DEFAULT 0,
    last_seen_ip TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (user_id, device_id)
);

-- Only hashes of tokens are stored.
CREATE TABLE access_tokens (
    token_hash   BLOB PRIMARY KEY,
    user_id      TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    refresh_hash BLOB,
    expires_ts   INTEGER NOT NULL DEFAULT 0,
    created_ts   INTEGER NOT NULL
);
CREATE INDEX access_tokens_device ON access_tokens (user_id, device_id);
CREATE UNIQUE INDEX access_tokens_refresh ON access_tokens (refresh_hash) WHERE refresh_hash IS NOT NULL;

CREATE TABLE rooms (
    room_id    TEXT PRIMARY KEY,
    version    TEXT NOT NULL,
    creator    TEXT NOT NULL,
    created_ts INTEGER NOT NULL,
    public     INTEGER NOT NULL DEFAULT 0
);

-- Every event, keyed by its global stream position.
CREATE TABLE events (
    pos              INTEGER PRIMARY KEY,
    event_id         TEXT NOT NULL UNIQUE,
    room_id          TEXT NOT NULL,
    type             TEXT NOT NULL,
    state_key        TEXT,
    sender           TEXT NOT NULL,
    depth            INTEGER NOT NULL,
    origin_server_ts INTEGER NOT NULL,
    json             BLOB NOT NULL,
    replaces_state   TEXT NOT NULL DEFAULT '',
    membership       TEXT NOT NULL DEFAULT '',
    redacted_by      TEXT NOT NULL DEFAULT '',
    relates_to       TEXT NOT NULL DEFAULT '',
    rel_type         TEXT NOT NULL DEFAULT '',
    sender_device    TEXT NOT NULL DEFAULT '',
    txn_id           TEXT NOT NULL DEFAULT '',
    contains_url     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX events_room_pos ON events (room_id, pos);
CREATE INDEX events_room_state ON events (room_id, type, state_key, pos) WHERE state_key IS NOT NULL;
CREATE INDEX events_relates ON events (relates_to, rel_type, pos) WHERE relates_to <> '';

-- Per-device transaction IDs for /send and /redact idempotency; like
-- Synapse, a transaction is scoped to the device and the room (the request path).
CREATE TABLE txns (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    room_id    TEXT NOT NULL,
    txn_id     TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, room_id, txn_id)
);

-- Current state of each room.
CREATE TABLE room_state (
    room_id   TEXT NOT NULL,
    type      TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    pos       INTEGER NOT NULL,
    PRIMARY KEY (room_id, type, state_key)
);

-- Current membership of each user in each room (mirrors room_state's member events).
CREATE TABLE memberships (
    room_id    TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    membership TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    pos        INTEGER NOT NULL,
    forgotten  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id, membership);

CREATE TABLE forward_extremities (
    room_id  TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);

CREATE TABLE room_aliases (
    alias   TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    creator TEXT NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases (room_id);

CREATE TABLE account_data (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    type    TEXT NOT NULL,
    content BLOB NOT NULL,
    pos     INTEGER NOT NULL,
    PRIMARY KEY (user_id, room_id, type)
);
CREATE INDEX account_data_pos ON account_data (user_id, pos);

CREATE TABLE receipts (
    room_id   TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    type      TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    ts        INTEGER NOT NULL,
    pos       INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id, type, thread_id)
);
CREATE INDEX receipts_room_pos ON receipts (room_id, pos);

CREATE TABLE filters (
    user_id   TEXT NOT NULL,
    filter_id INTEGER NOT NULL,
    json      BLOB NOT NULL,
    PRIMARY KEY (user_id, filter_id)
);
