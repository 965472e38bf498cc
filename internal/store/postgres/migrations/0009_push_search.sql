-- Pushers (POST /pushers/set) and the full-text index for POST /search.

CREATE TABLE pushers (
    user_id             TEXT NOT NULL,
    device_id           TEXT NOT NULL,
    app_id              TEXT NOT NULL,
    pushkey             TEXT NOT NULL,
    kind                TEXT NOT NULL,
    app_display_name    TEXT NOT NULL,
    device_display_name TEXT NOT NULL,
    profile_tag         TEXT NOT NULL DEFAULT '',
    lang                TEXT NOT NULL,
    data                BYTEA NOT NULL,
    created_ts          BIGINT NOT NULL,
    PRIMARY KEY (user_id, app_id, pushkey)
);
CREATE INDEX pushers_key ON pushers (app_id, pushkey);
CREATE INDEX pushers_device ON pushers (user_id, device_id);

-- One row per searchable event (pos = the event's stream position), as in
-- the SQLite backend: m.room.message bodies, m.room.name names and
-- m.room.topic topics, kept in step with events by triggers; a redaction
-- removes the row. The 'simple' configuration lower-cases without stemming
-- and unaccent folds diacritics, like SQLite's unicode61 tokenizer with
-- remove_diacritics. (unaccent is a trusted extension: a database owner may
-- create it.)
CREATE EXTENSION IF NOT EXISTS unaccent;
CREATE TABLE event_search (
    pos        BIGINT PRIMARY KEY,
    vec_body   TSVECTOR NOT NULL,
    vec_name   TSVECTOR NOT NULL,
    vec_topic  TSVECTOR NOT NULL
);
CREATE INDEX event_search_all ON event_search USING GIN ((vec_body || vec_name || vec_topic));

CREATE FUNCTION event_search_text(j BYTEA, key TEXT) RETURNS TEXT LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    doc JSONB;
BEGIN
    doc := convert_from(j, 'UTF8')::jsonb;
    IF jsonb_typeof(doc->'content'->key) = 'string' THEN
        RETURN doc->'content'->>key;
    END IF;
    RETURN NULL;
EXCEPTION WHEN others THEN
    RETURN NULL;
END;
$$;

CREATE FUNCTION event_search_index() RETURNS TRIGGER LANGUAGE plpgsql AS $$
DECLARE
    b TEXT;
    n TEXT;
    t TEXT;
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.redacted_by <> '' OR NEW.type NOT IN ('m.room.message', 'm.room.name', 'm.room.topic') THEN
            RETURN NULL;
        END IF;
        IF NEW.type = 'm.room.message' THEN b := event_search_text(NEW.json, 'body'); END IF;
        IF NEW.type = 'm.room.name' THEN n := event_search_text(NEW.json, 'name'); END IF;
        IF NEW.type = 'm.room.topic' THEN t := event_search_text(NEW.json, 'topic'); END IF;
        IF coalesce(b, n, t) IS NULL THEN
            RETURN NULL;
        END IF;
        INSERT INTO event_search (pos, vec_body, vec_name, vec_topic)
        VALUES (NEW.pos, to_tsvector('simple', unaccent(coalesce(b, ''))), to_tsvector('simple', unaccent(coalesce(n, ''))), to_tsvector('simple', unaccent(coalesce(t, ''))));
    ELSIF TG_OP = 'UPDATE' THEN
        IF NEW.redacted_by <> '' AND OLD.redacted_by = '' THEN
            DELETE FROM event_search WHERE pos = NEW.pos;
        END IF;
    ELSIF TG_OP = 'DELETE' THEN
        DELETE FROM event_search WHERE pos = OLD.pos;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER event_search_insert AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION event_search_index();
CREATE TRIGGER event_search_redact AFTER UPDATE OF redacted_by ON events FOR EACH ROW EXECUTE FUNCTION event_search_index();
CREATE TRIGGER event_search_delete AFTER DELETE ON events FOR EACH ROW EXECUTE FUNCTION event_search_index();

-- Events stored before this migration.
INSERT INTO event_search (pos, vec_body, vec_name, vec_topic)
SELECT pos, to_tsvector('simple', unaccent(coalesce(b, ''))), to_tsvector('simple', unaccent(coalesce(n, ''))), to_tsvector('simple', unaccent(coalesce(t, '')))
FROM (SELECT pos,
    CASE WHEN type = 'm.room.message' THEN event_search_text(json, 'body') END AS b,
    CASE WHEN type = 'm.room.name' THEN event_search_text(json, 'name') END AS n,
    CASE WHEN type = 'm.room.topic' THEN event_search_text(json, 'topic') END AS t
    FROM events WHERE type IN ('m.room.message', 'm.room.name', 'm.room.topic') AND redacted_by = '') s
WHERE coalesce(b, n, t) IS NOT NULL;
