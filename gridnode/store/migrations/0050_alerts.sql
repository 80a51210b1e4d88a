-- Alerts: one row per alert rule, its current state and when it last changed. Each change is
-- also an `alert.raised` / `alert.cleared` event, appended in the same transaction.
CREATE TABLE alerts (
    name            TEXT PRIMARY KEY,          -- the rule, e.g. 'rpc_down'
    state           TEXT NOT NULL,             -- 'raised' | 'cleared'
    value           REAL,                      -- what was measured at the last change
    threshold       REAL,                      -- the configured limit at the last change
    detail          TEXT NOT NULL,             -- why, for a human
    raised_at_ms    INTEGER,                   -- when it was last raised
    changed_at_ms   INTEGER NOT NULL
) STRICT;
