-- The transaction pipeline's per-operation recovery counters: how many times each kind of
-- failure (blockhash_expired, insufficient_compute, simulation_failed, transaction_expired, ...)
-- has been met. An operation that exhausts its budget for one kind is parked; the counters are
-- cleared when it is parked, so `gridnode outbox retry` gives it a fresh budget.
CREATE TABLE operation_recovery (
    operation_id    INTEGER NOT NULL REFERENCES operations(id),
    kind            TEXT NOT NULL,
    count           INTEGER NOT NULL,
    PRIMARY KEY (operation_id, kind)
) STRICT;

-- Monitoring reads every signature of every in-flight operation.
CREATE INDEX tx_attempts_observed ON tx_attempts (observed_status);
