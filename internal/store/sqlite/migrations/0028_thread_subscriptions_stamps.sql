-- Thread subscriptions (MSC4306, internal/threadsubs): one row per (user,
-- room, thread root), kept after an unsubscription (subscribed = 0) so that
-- sliding sync's thread_subscriptions extension (MSC4308) can report it and
-- an automatic subscription caused by an older event can be refused. pos is
-- the stream position of the row's latest change (its bump_stamp).
CREATE TABLE thread_subscriptions (
    user_id          TEXT NOT NULL,
    room_id          TEXT NOT NULL,
    thread_id        TEXT NOT NULL,
    subscribed       INTEGER NOT NULL,
    automatic        INTEGER NOT NULL,
    unsubscribed_pos INTEGER NOT NULL, -- the latest unsubscription (0: never)
    pos              INTEGER NOT NULL,
    PRIMARY KEY (user_id, room_id, thread_id)
);
CREATE INDEX thread_subscriptions_pos ON thread_subscriptions (user_id, pos);

-- Sliding sync: each user's rooms' bump stamps as last computed, with the
-- stream position they were computed at (internal/slidingsync build.go
-- allStamps). After a restart a user's first request brings them forward
-- over the rooms changed since instead of looking up every room again.
CREATE TABLE sliding_sync_stamps (
    user_id TEXT PRIMARY KEY,
    pos     INTEGER NOT NULL,
    stamps  BLOB NOT NULL
);
