-- Raw readings are purged by age: an index on their time. UNIQUE (meter_id, read_at_ms) already
-- indexes them by meter, so the second index on the same columns only cost a write per row.
-- (auto_vacuum = INCREMENTAL, which lets the purge shrink the file, cannot be changed inside a
-- migration's transaction: gridnode.store.db sets it when the database is opened.)
DROP INDEX IF EXISTS readings_meter_time;
CREATE INDEX readings_read_at ON readings (read_at_ms);
