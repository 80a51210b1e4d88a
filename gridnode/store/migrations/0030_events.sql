-- The event log: every state change worth telling (operation status changes, intervals closed,
-- later alerts and settlements), appended in the same transaction as the change it reports.
-- Readers (the API's WebSocket, later upstream sync and webhooks) keep their own cursor on `id`.
-- AUTOINCREMENT: ids only ever grow, even after old rows are purged, so a cursor never skips or
-- repeats an event.
CREATE TABLE events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms           INTEGER NOT NULL,
    type            TEXT NOT NULL,             -- see gridnode/store/events.py EventType
    operation_id    INTEGER,                   -- subject keys, when the event has them
    meter_id        TEXT,
    data            TEXT NOT NULL              -- JSON
) STRICT;
