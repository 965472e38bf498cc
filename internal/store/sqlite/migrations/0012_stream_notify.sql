-- PostgreSQL's migration 0012 makes every stream allocation notify the other
-- processes sharing the database. SQLite has one process: nothing to do.
SELECT 1;
