-- Memberships of local users in rooms this server is not in: an invite from
-- another server (with the stripped state it sent), a rejected invite, a
-- knock. The event itself is an outlier in events; memberships holds the
-- membership as for any room, at the stream position of this row.
CREATE TABLE remote_memberships (
    pos            BIGINT PRIMARY KEY,
    room_id        TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    event_id       TEXT NOT NULL,
    room_version   TEXT NOT NULL,
    stripped_state BYTEA NOT NULL
);
CREATE UNIQUE INDEX remote_memberships_user ON remote_memberships (room_id, user_id);
