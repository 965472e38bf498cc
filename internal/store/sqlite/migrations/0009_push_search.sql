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
    data                BLOB NOT NULL,
    created_ts          INTEGER NOT NULL,
    PRIMARY KEY (user_id, app_id, pushkey)
);
CREATE INDEX pushers_key ON pushers (app_id, pushkey);
CREATE INDEX pushers_device ON pushers (user_id, device_id);

-- One row per searchable event, rowid = the event's stream position. Like
-- Synapse, m.room.message bodies, m.room.name names and m.room.topic topics
-- are indexed. Triggers keep it in step with the events table, so the room
-- writer needs no change; a redaction removes the event from the index.
CREATE VIRTUAL TABLE event_search USING fts5(body, name, topic, tokenize = 'unicode61 remove_diacritics 2');

CREATE TRIGGER event_search_insert AFTER INSERT ON events
WHEN new.type IN ('m.room.message', 'm.room.name', 'm.room.topic') AND new.redacted_by = ''
BEGIN
    INSERT INTO event_search (rowid, body, name, topic)
    SELECT new.pos, b, n, t FROM (SELECT
        CASE WHEN new.type = 'm.room.message' AND json_type(CAST(new.json AS TEXT), '$.content.body') = 'text' THEN json_extract(CAST(new.json AS TEXT), '$.content.body') END AS b,
        CASE WHEN new.type = 'm.room.name' AND json_type(CAST(new.json AS TEXT), '$.content.name') = 'text' THEN json_extract(CAST(new.json AS TEXT), '$.content.name') END AS n,
        CASE WHEN new.type = 'm.room.topic' AND json_type(CAST(new.json AS TEXT), '$.content.topic') = 'text' THEN json_extract(CAST(new.json AS TEXT), '$.content.topic') END AS t)
    WHERE coalesce(b, n, t) IS NOT NULL;
END;

CREATE TRIGGER event_search_redact AFTER UPDATE OF redacted_by ON events
WHEN new.redacted_by <> '' AND old.redacted_by = ''
BEGIN
    DELETE FROM event_search WHERE rowid = new.pos;
END;

CREATE TRIGGER event_search_delete AFTER DELETE ON events
BEGIN
    DELETE FROM event_search WHERE rowid = old.pos;
END;

-- Events stored before this migration.
INSERT INTO event_search (rowid, body, name, topic)
SELECT pos, b, n, t FROM (SELECT pos,
    CASE WHEN type = 'm.room.message' AND json_type(CAST(json AS TEXT), '$.content.body') = 'text' THEN json_extract(CAST(json AS TEXT), '$.content.body') END AS b,
    CASE WHEN type = 'm.room.name' AND json_type(CAST(json AS TEXT), '$.content.name') = 'text' THEN json_extract(CAST(json AS TEXT), '$.content.name') END AS n,
    CASE WHEN type = 'm.room.topic' AND json_type(CAST(json AS TEXT), '$.content.topic') = 'text' THEN json_extract(CAST(json AS TEXT), '$.content.topic') END AS t
    FROM events WHERE type IN ('m.room.message', 'm.room.name', 'm.room.topic') AND redacted_by = '')
WHERE coalesce(b, n, t) IS NOT NULL;
