-- Two lookups that grew with the database (found by bench/bench_year.py over a simulated year):
-- an upstream item of a finalized operation reads that operation's decoded events (a full scan
-- of chain_events per item without this index) ...
CREATE INDEX chain_events_operation ON chain_events (operation_id);
-- ... and the raw-readings purge asks, per reading, whether its meter has an undelivered
-- upstream interval item: only the undelivered items are indexed, so it is one seek however
-- many delivered items the meter has.
CREATE INDEX delivery_items_undelivered ON delivery_items (destination, order_key, kind)
    WHERE status != 'delivered';
