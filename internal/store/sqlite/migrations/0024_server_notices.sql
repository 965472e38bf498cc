-- Server notices (internal/notices): the room the server keeps for each user
-- it has sent a notice to, so later notices go to the same room.
CREATE TABLE server_notice_rooms (
    user_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL
);
