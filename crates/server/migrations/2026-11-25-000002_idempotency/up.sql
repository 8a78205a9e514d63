-- Idempotency keys of POST requests: a retried request with the same key gets the first
-- answer back instead of being done twice.
CREATE TABLE idempotency_keys (
    account_id       BIGINT      NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    key              TEXT        NOT NULL,
    -- SHA-256 of method, path and body: the same key with another request is refused.
    fingerprint      BYTEA       NOT NULL,
    -- The stored answer; NULL while the first request runs.
    response_status  INTEGER,
    response_body    JSONB,
    -- Renewed while the first request runs; past it, its process is presumed dead.
    locked_until     TIMESTAMPTZ NOT NULL,
    -- Who holds the claim: a new token on every takeover, so a presumed-dead request that
    -- wakes up can no longer write to (or free) the key.
    token            UUID        NOT NULL,
    -- The customer message a generate-reply call admitted, released if its process died.
    message_id       BIGINT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, key)
);
CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);
