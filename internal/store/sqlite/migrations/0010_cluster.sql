-- Migration 0010 shares the signing key and an ephemeral serial between
-- several processes on one PostgreSQL database. A SQLite database has one
-- process (the signing key stays in the data directory): nothing to do here;
-- the number is kept so both backends count migrations alike.
SELECT 1;
