-- Core schema: the global stream, accounts, rooms, events, state, memberships.
-- PostgreSQL translation of sqlite/migrations/0001_core.sql (same numbering):
-- INTEGER → BIGINT, BLOB → BYTEA (JSON is kept byte for byte: event JSON is
-- canonical and signed), 0/1 flags → BOOLEAN.

-- One global stream position: every change /sync reports takes the next one.
-- Allocating takes this row's lock until commit (see postgres/db.go), which
-- keeps positions committed in order.
CREATE TABLE stream (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    pos BIGINT NOT NULL
);
INSERT INTO stream (id, pos) VALUES (1, 0);

CREATE TABLE users (
    user_id       TEXT PRIMARY KEY,
    user_id_lower TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL DEFAULT '',
    is_admin      BOOLEAN NOT NULL DEFAULT false,
    is_guest      BOOLEAN NOT NULL DEFAULT false,
    deactivated   BOOLEAN NOT NULL DEFAULT false,
    created_ts    BIGINT NOT NULL
);

CREATE TABLE devices (
    user_id      TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    display_name TEXT,
    created_ts   BIGINT NOT NULL,
    last_seen_ts BIGINT NOT NULL DEFAULT 0,
    last_seen_ip TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (user_id, device_id)
);

-- Only hashes of tokens are stored.
CREATE TABLE access_tokens (
    token_hash   BYTEA PRIMARY KEY,
    user_id      TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    refresh_hash BYTEA,
    expires_ts   BIGINT NOT NULL DEFAULT 0,
    created_ts   BIGINT NOT NULL
);
CREATE INDEX access_tokens_device ON access_tokens (user_id, device_id);
CREATE UNIQUE INDEX access_tokens_refresh ON access_tokens (refresh_hash) WHERE refresh_hash IS NOT NULL;

CREATE TABLE rooms (
    room_id    TEXT PRIMARY KEY,
    version    TEXT NOT NULL,
    creator    TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    public     BOOLEAN NOT NULL DEFAULT false
);

-- Every event, keyed by its global stream position.
CREATE TABLE events (
    pos              BIGINT PRIMARY KEY,
    event_id         TEXT NOT NULL UNIQUE,
    room_id          TEXT NOT NULL,
    type             TEXT NOT NULL,
    state_key        TEXT,
    sender           TEXT NOT NULL,
    depth            BIGINT NOT NULL,
    origin_server_ts BIGINT NOT NULL,
    json             BYTEA NOT NULL,
    replaces_state   TEXT NOT NULL DEFAULT '',
    membership       TEXT NOT NULL DEFAULT '',
    redacted_by      TEXT NOT NULL DEFAULT '',
    relates_to       TEXT NOT NULL DEFAULT '',
    rel_type         TEXT NOT NULL DEFAULT '',
    sender_device    TEXT NOT NULL DEFAULT '',
    txn_id           TEXT NOT NULL DEFAULT '',
    contains_url     BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX events_room_pos ON events (room_id, pos);
CREATE INDEX events_room_state ON events (room_id, type, state_key, pos) WHERE state_key IS NOT NULL;
CREATE INDEX events_relates ON events (relates_to, rel_type, pos) WHERE relates_to <> '';

-- Per-device transaction IDs for /send and /redact idempotency, scoped to
-- the device and the room (the request path), like Synapse.
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
    pos       BIGINT NOT NULL,
    PRIMARY KEY (room_id, type, state_key)
);

-- Current membership of each user in each room (mirrors room_state's member events).
CREATE TABLE memberships (
    room_id    TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    membership TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    pos        BIGINT NOT NULL,
    forgotten  BOOLEAN NOT NULL DEFAULT false,
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
    content BYTEA NOT NULL,
    pos     BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, type)
);
CREATE INDEX account_data_pos ON account_data (user_id, pos);

CREATE TABLE receipts (
    room_id   TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    type      TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    ts        BIGINT NOT NULL,
    pos       BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id, type, thread_id)
);
CREATE INDEX receipts_room_pos ON receipts (room_id, pos);

CREATE TABLE filters (
    user_id   TEXT NOT NULL,
    filter_id BIGINT NOT NULL,
    json      BYTEA NOT NULL,
    PRIMARY KEY (user_id, filter_id)
);
