-- /messages pages a room in topological order, (depth, position): the
-- events before an event in the room's graph come before it, wherever they
-- were stored (backfilled history, at negative positions, included).
CREATE INDEX events_room_depth ON events (room_id, depth, pos);
