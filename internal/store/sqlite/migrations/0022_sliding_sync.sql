-- Simplified sliding sync (MSC4186) connections (internal/slidingsync): one
-- row per (user, device, conn_id) with the latest position handed out and
-- the one it was built from, each with the engine's connection state; and
-- per room how far the client was sent it. Positions are in the database so
-- they survive a restart and work on every process sharing it.
CREATE TABLE sliding_sync_connections (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    conn_id    TEXT NOT NULL,
    seq        INTEGER NOT NULL,    -- latest position handed out
    prev_seq   INTEGER NOT NULL,    -- the position it was built from (0: none)
    state      BLOB NOT NULL,     -- the engine's state at seq
    prev_state BLOB NOT NULL,     -- and at prev_seq
    updated_ts INTEGER NOT NULL,    -- Unix ms of the last use; old ones expire
    UNIQUE (user_id, device_id, conn_id)
);
CREATE INDEX sliding_sync_connections_updated ON sliding_sync_connections (updated_ts);

CREATE TABLE sliding_sync_rooms (
    conn        INTEGER NOT NULL,   -- sliding_sync_connections.id
    room_id     TEXT NOT NULL,
    seq         INTEGER NOT NULL,   -- the position that last changed the row
    sent        INTEGER NOT NULL,   -- stream position the room was sent up to
    config      INTEGER NOT NULL,   -- fingerprint of what it was sent with
    lazy        BLOB NOT NULL,    -- $LAZY members sent: JSON {user: position of their member event}
    prev_sent   INTEGER NOT NULL,   -- all three before seq (a retry starts there)
    prev_config INTEGER NOT NULL,
    prev_lazy   BLOB NOT NULL,
    PRIMARY KEY (conn, room_id)
);
