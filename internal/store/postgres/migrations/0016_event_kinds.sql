-- The room graph, step two: events that are not in the timeline.
--
-- kind: 0 timeline (accepted, with state: clients see it); 1 outlier (known
-- without its state: auth chains, invites to rooms we are not in); 2
-- soft-failed (allowed by the state before it, not by the room's current
-- state: kept with its state, out of timelines and forward extremities); 3
-- rejected (failed the authorisation rules: kept so it is not fetched again,
-- never used). Every kind but 0 takes a negative position, from a sequence of
-- its own (negated), so no /sync, whose positions are positive, meets it.
ALTER TABLE events ADD COLUMN kind SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN rejected_reason TEXT NOT NULL DEFAULT '';

-- current_group: the room's current state right after the event was written
-- (the resolution of the forward extremities then), where state_group is
-- the state after the event in the graph. They differ when branches meet;
-- /sync, which reads the room as of stream positions, wants the first.
ALTER TABLE events ADD COLUMN current_group BIGINT NOT NULL DEFAULT 0;
UPDATE events SET current_group = state_group WHERE state_group <> 0;
CREATE SEQUENCE events_apart_pos;
