-- An operation's link to the transactions that carried it held the transaction's signature
-- (88 characters) twice per operation, in the row and in its primary key: 233 B per operation
-- over a year (bench/bench_year.py), more than the operation row's own payload. Attempts get an
-- integer id and the link is (attempt_id, operation_id), stored once (WITHOUT ROWID).
CREATE TABLE tx_attempts_new (
    id                      INTEGER PRIMARY KEY,
    signature               TEXT NOT NULL UNIQUE,  -- base58
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
INSERT INTO tx_attempts_new (id, signature, serialized, blockhash, last_valid_block_height,
        compute_unit_limit, priority_fee_micro_lamports, created_at_ms, first_sent_at_ms,
        last_sent_at_ms, send_count, observed_status, slot, err, fee_lamports, observed_at_ms)
    SELECT rowid, signature, serialized, blockhash, last_valid_block_height, compute_unit_limit,
           priority_fee_micro_lamports, created_at_ms, first_sent_at_ms, last_sent_at_ms,
           send_count, observed_status, slot, err, fee_lamports, observed_at_ms
    FROM tx_attempts;
CREATE TABLE tx_attempt_operations_new (
    attempt_id      INTEGER NOT NULL REFERENCES tx_attempts_new(id),
    operation_id    INTEGER NOT NULL REFERENCES operations(id),
    ix_index        INTEGER NOT NULL,          -- the operation's first instruction in the tx
    PRIMARY KEY (attempt_id, operation_id)
) STRICT, WITHOUT ROWID;
INSERT INTO tx_attempt_operations_new (attempt_id, operation_id, ix_index)
    SELECT a.id, t.operation_id, t.ix_index
    FROM tx_attempt_operations t JOIN tx_attempts_new a ON a.signature = t.signature;
DROP TABLE tx_attempt_operations;
DROP TABLE tx_attempts;
ALTER TABLE tx_attempts_new RENAME TO tx_attempts;
ALTER TABLE tx_attempt_operations_new RENAME TO tx_attempt_operations;
CREATE INDEX tx_attempts_observed ON tx_attempts (observed_status);
CREATE INDEX tx_attempt_operations_op ON tx_attempt_operations (operation_id);
