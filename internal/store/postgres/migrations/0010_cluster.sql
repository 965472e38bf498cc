-- Several conclave processes on one database (docs/deployment.md).

-- The server's ed25519 signing key, in Synapse's text format: the first
-- process creates it (or imports its data directory's signing.key), the
-- others use it, so every process signs with the same key.
CREATE TABLE server_signing_key (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    key TEXT NOT NULL
);

-- The cluster-wide serial of ephemeral changes (typing, presence). Each change
-- takes the next serial and is announced with NOTIFY in the same
-- transaction; the row lock orders the commits, so every process receives
-- the changes in serial order.
CREATE TABLE ephemeral_serial (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    serial BIGINT NOT NULL
);
-- It starts at the current Unix milliseconds, as the in-memory serials of a
-- single process do, so tokens from before the move to several processes
-- fall below it.
INSERT INTO ephemeral_serial (id, serial) VALUES (1, (extract(epoch FROM now()) * 1000)::bigint);
