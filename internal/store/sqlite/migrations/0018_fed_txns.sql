-- The answers to transactions other servers sent (PUT /send/{txnId}), per
-- origin and transaction ID: a retry (its answer was lost, or this server
-- restarted meanwhile) gets the same answer without its PDUs and EDUs being
-- processed again. Kept a day (internal/federation prunes them).
CREATE TABLE fed_received_txns (
    origin      TEXT NOT NULL,
    txn_id      TEXT NOT NULL,
    answer      BLOB NOT NULL,
    received_ts INTEGER NOT NULL,
    PRIMARY KEY (origin, txn_id)
);
CREATE INDEX fed_received_txns_ts ON fed_received_txns (received_ts);
