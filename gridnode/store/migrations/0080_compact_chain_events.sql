-- Decoded chain events were kept unique by (signature, program_id, name, data): that index held
-- a second copy of every event's JSON and signature, about a third of the table's bytes over a
-- year (bench/bench_year.py). An event is identified by its place in its transaction's log
-- instead: `seq`, 0 for the first event decoded from the transaction. Decoding the same
-- transaction again gives the same places, so a repeated record is still ignored.
CREATE TABLE chain_events_new (
    id              INTEGER PRIMARY KEY,
    signature       TEXT NOT NULL,
    seq             INTEGER NOT NULL,          -- the event's place among its transaction's events
    operation_id    INTEGER REFERENCES operations(id),
    program_id      TEXT NOT NULL,
    name            TEXT NOT NULL,
    data            TEXT NOT NULL,             -- JSON
    slot            INTEGER,
    UNIQUE (signature, seq)
) STRICT;
INSERT INTO chain_events_new (id, signature, seq, operation_id, program_id, name, data, slot)
    SELECT id, signature, row_number() OVER (PARTITION BY signature ORDER BY id) - 1,
           operation_id, program_id, name, data, slot
    FROM chain_events;
DROP TABLE chain_events;
ALTER TABLE chain_events_new RENAME TO chain_events;
CREATE INDEX chain_events_operation ON chain_events (operation_id);
