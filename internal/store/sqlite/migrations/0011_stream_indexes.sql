-- /sync asks on every call whether any device list or membership changed in
-- (since, upto]; these indexes answer that without scanning either table.
CREATE INDEX device_list_changes_pos ON device_list_changes (pos);
CREATE INDEX memberships_pos ON memberships (pos);
