-- Every allocation of stream positions notifies, on commit, every process
-- listening on conclave_stream: "<old pos> <new pos> <marks>", where marks are
-- the keys the writer's change tracker set for the transaction
-- (conclave.marks, transaction-local; empty when it set none). Notifications
-- arrive in commit order and commits are in position order, so a process
-- that heard position P has heard everything at or below it
-- (internal/changes/feed.go). Being a trigger, no allocation can forget it.
CREATE FUNCTION conclave_stream_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_notify('conclave_stream', OLD.pos || ' ' || NEW.pos || ' ' || coalesce(current_setting('conclave.marks', true), ''));
	RETURN NULL;
END
$$;
CREATE TRIGGER stream_notify AFTER UPDATE OF pos ON stream FOR EACH ROW EXECUTE FUNCTION conclave_stream_notify();
