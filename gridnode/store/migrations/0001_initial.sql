-- gridnode schema, version 1. Forward-only: later changes go in new numbered files.
-- Times are Unix milliseconds (suffix _ms) unless the column is an interval boundary, which is
-- Unix seconds as the chain uses them. Energy is watt-hours; raw counters keep the meter's
-- resolution (REAL), interval energy is whole Wh (INTEGER) with the remainder carried forward.

-- Meters known to this node (from configuration), one row per configured meter.
CREATE TABLE meters (
    meter_id        TEXT PRIMARY KEY,          -- on-chain meter_id, <= 32 bytes
    source          TEXT NOT NULL,             -- 'modbus' | 'mqtt'
    profile         TEXT,                      -- meter profile name (modbus) or payload format (mqtt)
    owner           TEXT,                      -- owner wallet (base58), when known
    created_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL
) STRICT;

-- Validated raw readings: cumulative counters as read, never anything that failed validation.
CREATE TABLE readings (
    id              INTEGER PRIMARY KEY,
    meter_id        TEXT NOT NULL REFERENCES meters(meter_id),
    read_at_ms      INTEGER NOT NULL,          -- meter time (or receive time) in UTC
    received_at_ms  INTEGER NOT NULL,
    import_wh       REAL NOT NULL,             -- cumulative imported energy (consumption)
    export_wh       REAL,                      -- cumulative exported energy (generation), if any
    power_w         REAL,
    voltage_v       REAL,
    current_a       REAL,
    frequency_hz    REAL,
    UNIQUE (meter_id, read_at_ms)
) STRICT;
CREATE INDEX readings_meter_time ON readings (meter_id, read_at_ms);

-- Closed intervals: energy per meter per UTC-aligned interval, written once.
CREATE TABLE intervals (
    id                  INTEGER PRIMARY KEY,
    meter_id            TEXT NOT NULL REFERENCES meters(meter_id),
    interval_start      INTEGER NOT NULL,      -- Unix seconds, aligned
    interval_end        INTEGER NOT NULL,      -- Unix seconds; what goes on chain as the timestamp
    import_wh           INTEGER NOT NULL,      -- energy consumed in the interval
    export_wh           INTEGER NOT NULL,      -- energy produced in the interval
    counter_import_start REAL NOT NULL,        -- counters at the boundaries (interpolated)
    counter_import_end   REAL NOT NULL,
    counter_export_start REAL NOT NULL,
    counter_export_end   REAL NOT NULL,
    backfilled          INTEGER NOT NULL DEFAULT 0,  -- 1 when spread over an outage
    created_at_ms       INTEGER NOT NULL,
    UNIQUE (meter_id, interval_start)
) STRICT;

-- The outbox: one row per logical on-chain operation.
CREATE TABLE operations (
    id                  INTEGER PRIMARY KEY,
    tx_type             TEXT NOT NULL,         -- meter_reading, order_creation, ...
    payload             TEXT NOT NULL,         -- JSON
    idempotency_key     TEXT NOT NULL UNIQUE,  -- e.g. meter_reading:<meter>:<interval_end>
    status              TEXT NOT NULL,         -- see gridnode/store/transitions.py
    attempts            INTEGER NOT NULL DEFAULT 0,
    last_error          TEXT,
    next_attempt_at_ms  INTEGER,               -- earliest time the next step may run
    created_at_ms       INTEGER NOT NULL,
    updated_at_ms       INTEGER NOT NULL,
    submitted_at_ms     INTEGER,
    confirmed_at_ms     INTEGER,
    finalized_at_ms     INTEGER
) STRICT;
CREATE INDEX operations_status ON operations (status, next_attempt_at_ms);

-- Every signed transaction ever produced, persisted before it is sent.
CREATE TABLE tx_attempts (
    signature               TEXT PRIMARY KEY,  -- base58
    serialized              BLOB NOT NULL,     -- the exact signed bytes
    blockhash               TEXT NOT NULL,
    last_valid_block_height INTEGER NOT NULL,
    compute_unit_limit      INTEGER,
    priority_fee_micro_lamports INTEGER,
    created_at_ms           INTEGER NOT NULL,
    first_sent_at_ms        INTEGER,
    last_sent_at_ms         INTEGER,
    send_count              INTEGER NOT NULL DEFAULT 0,
    observed_status         TEXT NOT NULL DEFAULT 'unsent', -- unsent|sent|processed|confirmed|finalized|failed|expired
    slot                    INTEGER,
    err                     TEXT,              -- JSON of the transaction error, if it failed
    fee_lamports            INTEGER,
    observed_at_ms          INTEGER
) STRICT;

-- Which operations a transaction carries (a batch carries several), and at which instruction.
CREATE TABLE tx_attempt_operations (
    signature       TEXT NOT NULL REFERENCES tx_attempts(signature),
    operation_id    INTEGER NOT NULL REFERENCES operations(id),
    ix_index        INTEGER NOT NULL,
    PRIMARY KEY (signature, operation_id)
) STRICT;
CREATE INDEX tx_attempt_operations_op ON tx_attempt_operations (operation_id);

-- Anchor events decoded from an operation's confirmed transaction.
CREATE TABLE chain_events (
    id              INTEGER PRIMARY KEY,
    signature       TEXT NOT NULL,
    operation_id    INTEGER REFERENCES operations(id),
    program_id      TEXT NOT NULL,
    name            TEXT NOT NULL,
    data            TEXT NOT NULL,             -- JSON
    slot            INTEGER,
    UNIQUE (signature, program_id, name, data)
) STRICT;

-- Matched trades this node settles, and their state.
CREATE TABLE settlements (
    id              INTEGER PRIMARY KEY,
    trade_record    TEXT NOT NULL UNIQUE,      -- TradeRecord account address
    operation_id    INTEGER REFERENCES operations(id),
    status          TEXT NOT NULL,
    payload         TEXT NOT NULL,             -- JSON
    created_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL
) STRICT;

-- Upstream sync: an outbox towards the platform, with idempotency keys.
CREATE TABLE upstream_deliveries (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    payload         TEXT NOT NULL,             -- JSON
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    next_attempt_at_ms INTEGER,
    created_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL,
    delivered_at_ms INTEGER
) STRICT;

-- Every state change of every stateful row, written in the same transaction as the change.
CREATE TABLE audit_log (
    id              INTEGER PRIMARY KEY,
    at_ms           INTEGER NOT NULL,
    entity          TEXT NOT NULL,             -- 'operation' | 'settlement' | 'upstream_delivery'
    entity_id       INTEGER NOT NULL,
    old_status      TEXT,
    new_status      TEXT NOT NULL,
    reason          TEXT NOT NULL,
    details         TEXT                       -- JSON
) STRICT;
CREATE INDEX audit_log_entity ON audit_log (entity, entity_id);
