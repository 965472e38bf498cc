-- Invitations to e-mail addresses without an account (internal/threepid):
-- they let an external register and make /info answer invited.
CREATE TABLE threepid_invites (
    medium     TEXT NOT NULL,
    address    TEXT NOT NULL,
    room_id    TEXT NOT NULL,
    sender     TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (medium, address, room_id, sender)
);
