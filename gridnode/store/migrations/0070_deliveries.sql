-- Deliveries: one engine sends what the event log reports to each destination (the upstream
-- platform, webhooks, Home Assistant). Each destination has a durable cursor into `events` and
-- one row per item it selected, captured with the cursor's advance in one transaction, so an
-- item is never lost between the log and its destination, survives kill -9, and is sent at
-- least once (receivers dedupe on the item's idempotency key).
--
-- These supersede `upstream_deliveries` (0001), which was never written: its idempotency key is
-- unique across all destinations (two webhooks could not both receive one event) and it has no
-- destination, cursor or parked answer. It is left in place, empty, for the schema's history.
CREATE TABLE delivery_destinations (
    id                  INTEGER PRIMARY KEY,       -- audit_log.entity_id ('delivery_destination')
    name                TEXT NOT NULL UNIQUE,      -- 'upstream', 'webhook:<id>', ...
    kind                TEXT NOT NULL,             -- 'upstream' | 'webhook' | ...
    cursor              INTEGER NOT NULL DEFAULT 0, -- events.id of the last event looked at
    status              TEXT NOT NULL DEFAULT 'active',  -- 'active' | 'disabled'
    config              TEXT,                      -- JSON owned by the destination's kind
    failures            INTEGER NOT NULL DEFAULT 0, -- consecutive failed requests
    failing_since_ms    INTEGER,                   -- first failure of the current run of them
    next_attempt_at_ms  INTEGER,                   -- no request before this (backoff, Retry-After)
    last_error          TEXT,
    last_delivered_at_ms INTEGER,
    disabled_reason     TEXT,
    created_at_ms       INTEGER NOT NULL,
    updated_at_ms       INTEGER NOT NULL
) STRICT;

CREATE TABLE delivery_items (
    id                  INTEGER PRIMARY KEY,       -- audit_log.entity_id ('delivery')
    destination         TEXT NOT NULL REFERENCES delivery_destinations(name) ON DELETE CASCADE,
    event_id            INTEGER NOT NULL,          -- the event it was made from
    kind                TEXT NOT NULL,             -- e.g. 'interval.finalized'
    idempotency_key     TEXT NOT NULL,             -- stable: the receiver dedupes on it
    order_key           TEXT,                      -- items with one order key go out in id order
    payload             TEXT NOT NULL,             -- JSON, as it will be sent
    status              TEXT NOT NULL,             -- 'pending' | 'delivered' | 'parked'
    attempts            INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms  INTEGER,                   -- this item alone waits (its own retry)
    last_error          TEXT,
    answer              TEXT,                      -- what the destination said when it parked it
    created_at_ms       INTEGER NOT NULL,
    updated_at_ms       INTEGER NOT NULL,
    delivered_at_ms     INTEGER,
    UNIQUE (destination, idempotency_key)
) STRICT;
CREATE INDEX delivery_items_status ON delivery_items (destination, status, id);
CREATE INDEX delivery_items_order ON delivery_items (destination, order_key, status, id);
