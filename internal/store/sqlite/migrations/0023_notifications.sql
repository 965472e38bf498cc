-- Notifications (issue 16): one row per local user and event their push
-- rules made notify, written in the event's own transaction at its stream
-- position. /sync's unread counts count the rows after the user's read
-- receipts; GET /notifications lists them; each pusher delivers the rows
-- after its cursor.
CREATE TABLE event_push_actions (
    user_id   TEXT NOT NULL,
    pos       INTEGER NOT NULL,
    room_id   TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    highlight INTEGER NOT NULL,
    actions   TEXT NOT NULL,
    ts        INTEGER NOT NULL,
    PRIMARY KEY (user_id, pos)
) WITHOUT ROWID;
-- One b-tree, keyed by user and position: every recipient of every event
-- costs one insert (each index more would cost another, scattered over the
-- users: the dominant cost of notifications in the load test). A room's
-- counts read the user's rows after the room's read point, skipping other
-- rooms' (PostgreSQL has an index per room as well).

-- A pusher delivers the notifications after last_pos; a process claims it
-- until claimed_until (milliseconds) before sending, so several processes on
-- one database send each notification once. failing_since is when the
-- gateway first failed in the current run of failures (0: none); retry_at
-- when the next attempt is due after a failure.
ALTER TABLE pushers ADD COLUMN last_pos INTEGER NOT NULL DEFAULT 0;
ALTER TABLE pushers ADD COLUMN failing_since INTEGER NOT NULL DEFAULT 0;
ALTER TABLE pushers ADD COLUMN claimed_by TEXT NOT NULL DEFAULT '';
ALTER TABLE pushers ADD COLUMN claimed_until INTEGER NOT NULL DEFAULT 0;
ALTER TABLE pushers ADD COLUMN retry_at INTEGER NOT NULL DEFAULT 0;
