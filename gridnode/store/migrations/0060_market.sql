-- Market and settlement (issue 14). Amounts are integers: energy in Wh, GRID in base units
-- (1 Wh = 10^6), prices in base units per kWh; never floats.

-- A settlement is one matched trade with a local seller: what was traded and what it is worth
-- (the money leg is billed by the platform from these rows), and its settle_trade operation.
ALTER TABLE settlements ADD COLUMN buy_order TEXT;
ALTER TABLE settlements ADD COLUMN sell_order TEXT;
ALTER TABLE settlements ADD COLUMN buyer TEXT;
ALTER TABLE settlements ADD COLUMN seller TEXT;
ALTER TABLE settlements ADD COLUMN energy_wh INTEGER;
ALTER TABLE settlements ADD COLUMN price_per_kwh INTEGER;
ALTER TABLE settlements ADD COLUMN total_value INTEGER;
ALTER TABLE settlements ADD COLUMN fee INTEGER;
ALTER TABLE settlements ADD COLUMN net_to_seller INTEGER;
ALTER TABLE settlements ADD COLUMN token_amount INTEGER;
ALTER TABLE settlements ADD COLUMN epoch INTEGER;             -- Unix s of the epoch's end, if known
ALTER TABLE settlements ADD COLUMN signature TEXT;            -- the settle_trade transaction
ALTER TABLE settlements ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE settlements ADD COLUMN last_error TEXT;
ALTER TABLE settlements ADD COLUMN next_attempt_at_ms INTEGER; -- a retry within the budget
ALTER TABLE settlements ADD COLUMN settled_at_ms INTEGER;
ALTER TABLE settlements ADD COLUMN reversal TEXT;             -- JSON: what was not delivered
CREATE INDEX settlements_status ON settlements (status);
CREATE INDEX settlements_seller ON settlements (seller);

-- The orders this node placed: which user, meter interval and epoch each one trades, its
-- order_creation operation, its address once the creation is finalized, and its cancel.
CREATE TABLE market_orders (
    id                  INTEGER PRIMARY KEY,
    operation_id        INTEGER NOT NULL UNIQUE REFERENCES operations(id),
    user_name           TEXT NOT NULL,
    owner               TEXT NOT NULL,             -- the user's wallet (base58)
    side                TEXT NOT NULL,             -- 'sell' | 'buy'
    energy_wh           INTEGER NOT NULL,
    price_per_kwh       INTEGER NOT NULL,
    epoch               INTEGER NOT NULL,          -- Unix s of the end of the epoch it trades in
    source              TEXT NOT NULL,             -- 'policy' | 'manual'
    meter_id            TEXT,                      -- policy orders: the meter and interval
    interval_end        INTEGER,
    order_address       TEXT,                      -- from the finalized *OrderCreated event
    cancel_operation_id INTEGER REFERENCES operations(id),
    closed              TEXT,                      -- after its epoch: 'cancel' | 'filled' | 'not_open'
    created_at_ms       INTEGER NOT NULL
) STRICT;
CREATE INDEX market_orders_epoch ON market_orders (epoch);
CREATE INDEX market_orders_address ON market_orders (order_address);

-- Epochs this node cleared (with the market authority): the match operations of an epoch are
-- enqueued in the one transaction that writes its row, so a restart never matches it again.
CREATE TABLE market_epochs (
    epoch               INTEGER PRIMARY KEY,       -- Unix s of its end
    orders              INTEGER NOT NULL,          -- open orders read from chain
    matches             INTEGER NOT NULL,          -- match_orders operations enqueued
    energy_wh           INTEGER NOT NULL,          -- matched energy
    cleared_at_ms       INTEGER NOT NULL
) STRICT;

-- Progress markers of the market subsystem (the last event or chain event id it consumed),
-- written in the transaction that acts on what it consumed.
CREATE TABLE market_cursors (
    name                TEXT PRIMARY KEY,
    value               INTEGER NOT NULL
) STRICT;
