-- The room graph, step one: the state after every event, as state groups.
--
-- A state group is a room state: a snapshot (prev_id 0, chain 0) or a delta
-- against an earlier group (prev_id, chain = deltas since the snapshot; a new
-- snapshot is taken at 100). state_group_entries holds a snapshot's state, or
-- a delta's changes (event_id '' removes the key). events.state_group is the
-- state after the event; rooms.state_group is the room's current state (the
-- resolution of its forward extremities' states).
CREATE TABLE state_groups (
    id      INTEGER PRIMARY KEY,
    room_id TEXT NOT NULL,
    prev_id INTEGER NOT NULL DEFAULT 0,
    chain   INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE state_group_entries (
    group_id  INTEGER NOT NULL,
    type      TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    PRIMARY KEY (group_id, type, state_key)
) WITHOUT ROWID;

ALTER TABLE events ADD COLUMN state_group INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rooms ADD COLUMN state_group INTEGER NOT NULL DEFAULT 0;

-- Rooms created before this migration have one linear history: each gets a
-- snapshot of its current state, which is the state after its forward
-- extremity. Their older events keep state_group 0, and the state after one
-- of them is read as before (the newest state event at or before it).
INSERT INTO state_groups (room_id) SELECT room_id FROM rooms ORDER BY room_id;
UPDATE rooms SET state_group = (SELECT max(g.id) FROM state_groups g WHERE g.room_id = rooms.room_id);
INSERT INTO state_group_entries (group_id, type, state_key, event_id)
    SELECT r.state_group, s.type, s.state_key, s.event_id FROM room_state s JOIN rooms r ON r.room_id = s.room_id;
UPDATE events SET state_group = (SELECT r.state_group FROM rooms r WHERE r.room_id = events.room_id)
    WHERE event_id IN (SELECT event_id FROM forward_extremities);
