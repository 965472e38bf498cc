-- Account validity (external users, --external-account-validity): when each
-- account expires, whether renewal mails are sent, the current renewal
-- token's hash and when it was mailed.
CREATE TABLE account_validity (
    user_id            TEXT PRIMARY KEY,
    expiration_ts      BIGINT NOT NULL,
    renewal_emails     BOOLEAN NOT NULL DEFAULT true,
    mail_sent_ts       BIGINT NOT NULL DEFAULT 0,
    renewal_token_hash BYTEA UNIQUE
);
CREATE INDEX account_validity_expiration ON account_validity (expiration_ts);
