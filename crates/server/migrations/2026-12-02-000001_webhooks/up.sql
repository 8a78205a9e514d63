-- Outgoing webhooks: URLs of an account's that receive its events, signed with the secret.
CREATE TABLE webhooks (
    id               BIGSERIAL PRIMARY KEY,
    account_id       BIGINT      NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    url              TEXT        NOT NULL,
    -- The event types delivered (message.received, reply.created, ...).
    event_types      TEXT[]      NOT NULL,
    -- `whsec_` + base64; kept as is, since every delivery is signed with it.
    secret           TEXT        NOT NULL,
    -- The last of the account's events turned into deliveries: the dispatcher moves it forward
    -- in the transaction that inserts them, so an event is queued once, and none is skipped
    -- (event ids commit in order). Starts at the account's last event: only later ones go.
    dispatched_up_to BIGINT      NOT NULL,
    disabled_at      TIMESTAMPTZ,
    disabled_reason  TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX webhooks_account ON webhooks (account_id);

-- One event to deliver to one webhook, until delivered.
CREATE TABLE webhook_deliveries (
    id               BIGSERIAL PRIMARY KEY,
    webhook_id       BIGINT      NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id         BIGINT      NOT NULL,
    -- Deliveries of one conversation go in event order: one at a time.
    conversation_id  UUID        NOT NULL,
    -- The exact body, so that every attempt sends (and signs) the same bytes.
    body             TEXT        NOT NULL,
    attempts         INTEGER     NOT NULL DEFAULT 0,
    -- Due when in the past. A sender taking it moves it a lease ahead, so that no other
    -- process sends it meanwhile, and a dead sender's delivery is taken again.
    next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    first_attempt_at TIMESTAMPTZ,
    delivered_at     TIMESTAMPTZ,
    -- The last attempt's HTTP status (none: no answer) and failure, for operators.
    last_status      INTEGER,
    last_error       TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE delivered_at IS NULL;
CREATE INDEX webhook_deliveries_conversation ON webhook_deliveries (webhook_id, conversation_id, event_id) WHERE delivered_at IS NULL;
CREATE INDEX webhook_deliveries_delivered ON webhook_deliveries (delivered_at) WHERE delivered_at IS NOT NULL;
