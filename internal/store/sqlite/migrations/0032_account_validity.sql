-- Account validity (external users, --external-account-validity): when each
-- account expires, whether renewal mails are sent, the current renewal
-- token's hash and when it was mailed.
CREATE TABLE account_validity (
    user_id            TEXT PRIMARY KEY,
    expiration_ts      INTEGER NOT NULL,
    renewal_emails     INTEGER NOT NULL DEFAULT 1,
    mail_sent_ts       INTEGER NOT NULL DEFAULT 0,
    renewal_token_hash BLOB UNIQUE
);
CREATE INDEX account_validity_expiration ON account_validity (expiration_ts);
