-- Holes in a room's timeline: a received event accepted with the state at
-- prev events this server could not fetch (its history before it is missing
-- here, until backfilled). /sync ends a timeline at such an event and marks
-- it limited, so clients page back (and backfill) instead of showing the
-- events after the hole as following those before it.
CREATE TABLE timeline_gaps (
    room_id TEXT NOT NULL,
    pos     BIGINT NOT NULL,
    PRIMARY KEY (room_id, pos)
);
