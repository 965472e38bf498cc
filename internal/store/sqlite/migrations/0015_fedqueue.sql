-- Durable outbound federation (internal/fedsender): a queue per destination.
--
-- A PDU or EDU sent to many servers is stored once (fed_payloads) and
-- referenced by one small queue row per destination. Queue order is the
-- payload id. A payload no row refers to any more is deleted after the
-- fact (store.FedQueue.FedCollect): counting references in the payload row
-- would make every destination's delivery update the same row.
CREATE TABLE fed_payloads (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT,             -- a PDU's event ID; NULL for an EDU
    edu_type TEXT,             -- an EDU's type; NULL for a PDU
    json     BLOB NOT NULL     -- the PDU, or the EDU's content
);

CREATE TABLE fed_queue_pdus (
    destination TEXT NOT NULL,
    payload_id  INTEGER NOT NULL,
    pending     INTEGER NOT NULL DEFAULT 0, -- in the destination's pending transaction
    PRIMARY KEY (destination, payload_id)
);
CREATE INDEX fed_queue_pdus_payload ON fed_queue_pdus (payload_id);

CREATE TABLE fed_queue_edus (
    destination  TEXT NOT NULL,
    payload_id   INTEGER NOT NULL,
    coalesce_key TEXT,                       -- a newer EDU with the same key replaces it; NULL: never
    droppable    INTEGER NOT NULL,           -- the queue cap may drop it (not to-device)
    pending      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (destination, payload_id)
);
CREATE INDEX fed_queue_edus_payload ON fed_queue_edus (payload_id);
CREATE UNIQUE INDEX fed_queue_edus_coalesce ON fed_queue_edus (destination, coalesce_key) WHERE coalesce_key IS NOT NULL;

-- Delivery state of a destination (a row once it was first attempted).
CREATE TABLE fed_destinations (
    destination     TEXT PRIMARY KEY,
    retry_count     INTEGER NOT NULL DEFAULT 0,
    next_attempt_ts INTEGER NOT NULL DEFAULT 0, -- Unix ms; no attempt before
    last_success_ts INTEGER NOT NULL DEFAULT 0,
    pending_txn     TEXT NOT NULL DEFAULT ''   -- the transaction ID a retry must reuse; '' when none
);
