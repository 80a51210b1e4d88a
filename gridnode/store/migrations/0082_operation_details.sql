-- The details of finalized operations can go after [retention] detail_days
-- (gridnode/store/retention.py).
--
-- A transaction's signed bytes move to their own table. Emptied in place, the bytes left their
-- space unused inside the old pages of tx_attempts for good (rows are appended in id order, so
-- nothing is written there again); deleted from a table of their own in id order, whole pages
-- are freed and given back.
CREATE TABLE tx_bytes (
    attempt_id  INTEGER PRIMARY KEY REFERENCES tx_attempts(id),
    serialized  BLOB NOT NULL                  -- the exact signed bytes
) STRICT;
INSERT INTO tx_bytes (attempt_id, serialized) SELECT id, serialized FROM tx_attempts;
ALTER TABLE tx_attempts DROP COLUMN serialized;

-- Where a retention pass that walks a table in id order stopped: the next pass starts there
-- instead of judging again every row it has passed.
CREATE TABLE retention_cursors (
    name        TEXT PRIMARY KEY,
    position    INTEGER NOT NULL
) STRICT;
