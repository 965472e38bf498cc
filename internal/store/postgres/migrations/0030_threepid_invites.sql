-- Invitations to e-mail addresses without an account (internal/threepid):
-- on the address's server they let an external register and make /info
-- answer invited; on the inviter's server token is the state key of the
-- room's m.room.third_party_invite, exchanged for an invite once the
-- address has an account ('' on the address's server when that is another).
CREATE TABLE threepid_invites (
    medium     TEXT NOT NULL,
    address    TEXT NOT NULL,
    room_id    TEXT NOT NULL,
    sender     TEXT NOT NULL,
    token      TEXT NOT NULL DEFAULT '',
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (medium, address, room_id, sender)
);

-- OpenID tokens (POST /user/{userId}/openid/request_token): proof of a user
-- for a third party such as an identity service, an hour each.
CREATE TABLE openid_tokens (
    token_hash BYTEA PRIMARY KEY,
    user_id    TEXT NOT NULL,
    expires_ts BIGINT NOT NULL
);
CREATE INDEX openid_tokens_expiry ON openid_tokens (expires_ts);

-- Identity service tokens (/_matrix/identity/v2/account/register): this
-- server's identity endpoints for a user of any server of the circle.
CREATE TABLE identity_tokens (
    token_hash BYTEA PRIMARY KEY,
    user_id    TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);
