-- Daily reconciliation (issue 14): one row per local day (node.timezone) reconciled, with the
-- report. A day counts as done for the scheduler only when a run started after the day had
-- ended completed (`final` = 1); a run of a day still under way (gridnode reconcile --now) is
-- kept, and replaced by the scheduled one.
CREATE TABLE reconciliation_runs (
    day             TEXT PRIMARY KEY,          -- 'YYYY-MM-DD', local day of node.timezone
    timezone        TEXT NOT NULL,
    status          TEXT NOT NULL,             -- 'running' | 'completed' | 'failed'
    final           INTEGER NOT NULL DEFAULT 0,  -- 1: started after the day ended
    trigger         TEXT NOT NULL,             -- 'schedule' | 'catch_up' | 'manual'
    started_at_ms   INTEGER NOT NULL,
    finished_at_ms  INTEGER,
    discrepancies   INTEGER,                   -- how many the report lists
    report          TEXT,                      -- JSON: the report
    report_path     TEXT,                      -- where its JSON file was written
    error           TEXT,                      -- why a failed run failed
    runs            INTEGER NOT NULL DEFAULT 1 -- how often this day was run
) STRICT;
CREATE INDEX reconciliation_runs_done ON reconciliation_runs (status, final, day);
