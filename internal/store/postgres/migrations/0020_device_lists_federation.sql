-- Device lists across servers (Server-Server API, "Device Management").

-- Outbound: what this server last announced in m.device_list_update of
-- each local user's devices (a hash of the device's keys and display
-- name), the user's last stream_id, and the position of the last device
-- list change announced (changes above it, left by a crash between a
-- change's commit and its announcement, are announced at start); the next
-- update is the difference.
CREATE TABLE device_list_outbound (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    hash      TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);
CREATE TABLE device_list_outbound_streams (
    user_id       TEXT PRIMARY KEY,
    stream_id     BIGINT NOT NULL,
    announced_pos BIGINT NOT NULL DEFAULT 0
);

-- Inbound: the remote users whose device list is cached here, complete as
-- of stream_id (the last update applied), with their devices and their
-- master and self-signing keys as their server sent them.
CREATE TABLE remote_device_lists (
    user_id   TEXT PRIMARY KEY,
    stream_id BIGINT NOT NULL
);
CREATE TABLE remote_devices (
    user_id      TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    display_name TEXT,
    key_json     BYTEA,
    PRIMARY KEY (user_id, device_id)
);
CREATE TABLE remote_cross_signing_keys (
    user_id  TEXT NOT NULL,
    key_type TEXT NOT NULL,
    key_json BYTEA NOT NULL,
    PRIMARY KEY (user_id, key_type)
);
