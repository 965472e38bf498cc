-- Threads per room by latest activity, and timestamp lookups.
CREATE INDEX events_room_rel ON events (room_id, rel_type, relates_to, pos) WHERE rel_type <> '';
CREATE INDEX events_room_ts ON events (room_id, origin_server_ts);
