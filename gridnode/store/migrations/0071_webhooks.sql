-- Webhook registrations (POST /api/v1/webhooks, gridnode webhooks add). Each one is delivered
-- by the deliveries engine as the destination 'webhook:<id>' of delivery_destinations (0070),
-- which holds its cursor, items, failures and disabled state; this table holds what only a
-- webhook has: where it goes, which event types it wants, and the secret it is signed with
-- (the node must sign with it; it is shown once, when the webhook is made, and never again).
CREATE TABLE webhooks (
    id              INTEGER PRIMARY KEY,
    url             TEXT NOT NULL,
    event_types     TEXT NOT NULL,             -- JSON array, e.g. ["TransactionConfirmed"]
    secret          TEXT NOT NULL,             -- whsec_<base64>
    description     TEXT,
    created_at_ms   INTEGER NOT NULL
) STRICT;
