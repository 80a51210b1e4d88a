-- Meters workstream: the interval builder's per-meter state and per-meter health.

-- Where each meter's interval builder stands, written in the same transaction as the reading and
-- the intervals it closes, so a restart resumes exactly (and back-fills what it missed).
CREATE TABLE meter_state (
    meter_id            TEXT PRIMARY KEY REFERENCES meters(meter_id),
    last_read_at_ms     INTEGER,
    last_import_raw     REAL,               -- counters as the meter reports them
    last_export_raw     REAL,
    import_offset       REAL NOT NULL DEFAULT 0,   -- added after a confirmed counter reset
    export_offset       REAL NOT NULL DEFAULT 0,
    boundary            INTEGER,            -- Unix s: start of the next interval to close
    boundary_import     REAL,               -- continuous counters at that boundary
    boundary_export     REAL,
    boundary_backfilled INTEGER NOT NULL DEFAULT 0,
    origin_import       REAL,               -- counters the emitted Wh are counted from
    origin_export       REAL,
    emitted_import      INTEGER NOT NULL DEFAULT 0,
    emitted_export      INTEGER NOT NULL DEFAULT 0,
    updated_at_ms       INTEGER NOT NULL
) STRICT;

-- Health of each meter as its source sees it, refreshed every few seconds (for `gridnode status`).
CREATE TABLE meter_health (
    meter_id            TEXT PRIMARY KEY REFERENCES meters(meter_id),
    source              TEXT NOT NULL,      -- bus name, or 'mqtt'
    requests            INTEGER NOT NULL DEFAULT 0,
    errors              INTEGER NOT NULL DEFAULT 0,
    accepted            INTEGER NOT NULL DEFAULT 0,
    rejected            INTEGER NOT NULL DEFAULT 0,
    rejections          TEXT NOT NULL DEFAULT '{}',   -- JSON: reason -> count
    last_good_at_ms     INTEGER,
    last_error          TEXT,
    state               TEXT NOT NULL,      -- 'online' | 'stale' | 'offline' | 'unknown'
    updated_at_ms       INTEGER NOT NULL
) STRICT;
