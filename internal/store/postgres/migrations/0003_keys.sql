-- End-to-end encryption: device keys, one-time and fallback keys,
-- cross-signing keys and signatures, device list changes, to-device
-- messages, server-side key backups.

CREATE TABLE device_keys (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    key_json   BYTEA NOT NULL,
    ed25519    TEXT NOT NULL,
    curve25519 TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- One-time keys are handed out in upload order (MSC4225): seq is that order.
CREATE TABLE one_time_keys (
    seq       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    key_json  BYTEA NOT NULL
);
CREATE UNIQUE INDEX one_time_keys_id ON one_time_keys (user_id, device_id, key_id);
CREATE INDEX one_time_keys_claim ON one_time_keys (user_id, device_id, algorithm, seq);

CREATE TABLE fallback_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    key_json  BYTEA NOT NULL,
    used      BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (user_id, device_id, algorithm)
);

CREATE TABLE cross_signing_keys (
    user_id  TEXT NOT NULL,
    key_type TEXT NOT NULL,
    pubkey   TEXT NOT NULL,
    key_json BYTEA NOT NULL,
    PRIMARY KEY (user_id, key_type)
);

-- Signatures uploaded through /keys/signatures/upload; merged on query.
CREATE TABLE key_signatures (
    target_user_id TEXT NOT NULL,
    target_key_id  TEXT NOT NULL,
    signer_user_id TEXT NOT NULL,
    signer_key_id  TEXT NOT NULL,
    signature      TEXT NOT NULL,
    PRIMARY KEY (target_user_id, target_key_id, signer_user_id, signer_key_id)
);
CREATE INDEX key_signatures_signer ON key_signatures (signer_user_id, signer_key_id);

-- A row per change to a user's device list (device added or removed,
-- display name or keys changed), at its stream position.
CREATE TABLE device_list_changes (
    user_id TEXT NOT NULL,
    pos     BIGINT NOT NULL,
    PRIMARY KEY (pos, user_id)
);
CREATE INDEX device_list_changes_user ON device_list_changes (user_id, pos);

-- Device additions, removals and renames are device list changes whoever
-- makes them (accounts service, admin API): triggers take the position in
-- the same transaction.
CREATE FUNCTION device_list_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    p BIGINT;
    u TEXT;
BEGIN
    IF TG_OP = 'DELETE' THEN u := OLD.user_id; ELSE u := NEW.user_id; END IF;
    UPDATE stream SET pos = pos + 1 WHERE id = 1 RETURNING pos INTO p;
    INSERT INTO device_list_changes (user_id, pos) VALUES (u, p);
    RETURN NULL;
END $$;
CREATE TRIGGER devices_added AFTER INSERT ON devices FOR EACH ROW EXECUTE FUNCTION device_list_changed();
CREATE TRIGGER devices_removed AFTER DELETE ON devices FOR EACH ROW EXECUTE FUNCTION device_list_changed();
CREATE TRIGGER devices_renamed AFTER UPDATE OF display_name ON devices FOR EACH ROW
    WHEN (OLD.display_name IS DISTINCT FROM NEW.display_name) EXECUTE FUNCTION device_list_changed();

CREATE TABLE to_device (
    pos       BIGINT PRIMARY KEY,
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    json      BYTEA NOT NULL
);
CREATE INDEX to_device_device ON to_device (user_id, device_id, pos);

CREATE TABLE to_device_txns (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id    TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);

-- Key backup versions are never reused: deleted ones stay as tombstones.
CREATE TABLE backup_versions (
    user_id   TEXT NOT NULL,
    version   BIGINT NOT NULL,
    algorithm TEXT NOT NULL,
    auth_data BYTEA NOT NULL,
    etag      BIGINT NOT NULL DEFAULT 0,
    deleted   BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (user_id, version)
);

CREATE TABLE backup_keys (
    user_id             TEXT NOT NULL,
    version             BIGINT NOT NULL,
    room_id             TEXT NOT NULL,
    session_id          TEXT NOT NULL,
    first_message_index BIGINT NOT NULL,
    forwarded_count     BIGINT NOT NULL,
    is_verified         BOOLEAN NOT NULL,
    session_data        BYTEA NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id)
);

-- MSC3814: at most one dehydrated device per user (a row of devices too).
CREATE TABLE dehydrated_devices (
    user_id     TEXT PRIMARY KEY,
    device_id   TEXT NOT NULL,
    device_data BYTEA NOT NULL
);
