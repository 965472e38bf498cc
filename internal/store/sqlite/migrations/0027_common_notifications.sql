-- Notifications stored once per event for the common outcome (issue 16):
-- a row per recipient cost most of a message's write in the load test. An
-- event_notifs row is the outcome of every user joined to the room before
-- the event (by stream order) other than its sender; the users whose
-- outcome differs have their own event_push_actions row, which replaces
-- it: notify = 0 when they are not notified at all.
CREATE TABLE event_notifs (
    room_id   TEXT NOT NULL,
    pos       INTEGER NOT NULL,
    event_id  TEXT NOT NULL,
    sender    TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    highlight INTEGER NOT NULL,
    actions   TEXT NOT NULL,
    ts        INTEGER NOT NULL,
    PRIMARY KEY (room_id, pos)
) WITHOUT ROWID;
ALTER TABLE event_push_actions ADD COLUMN notify INTEGER NOT NULL DEFAULT 1;
