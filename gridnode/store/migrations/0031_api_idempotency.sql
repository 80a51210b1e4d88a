-- The API's answers to POST requests that carried an Idempotency-Key, stored in the same
-- transaction as what the request changed: the same key and body get the first answer again, the
-- same key with another body is refused. Keys are per token subject.
CREATE TABLE api_idempotency (
    subject         TEXT NOT NULL,
    key             TEXT NOT NULL,
    request_sha256  TEXT NOT NULL,             -- method, path and canonical JSON body
    status          INTEGER NOT NULL,          -- the HTTP status of the first answer
    body            TEXT NOT NULL,             -- its JSON body
    created_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (subject, key)
) STRICT;
CREATE INDEX api_idempotency_age ON api_idempotency (created_at_ms);
