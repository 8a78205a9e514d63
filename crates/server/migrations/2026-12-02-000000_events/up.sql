-- Events: every change to a conversation, written in the transaction that makes it. Ids count
-- per account, taken from `accounts.last_event_id` under the account row's lock, so they
-- commit in id order: a reader that has seen event n has seen every event before it, and
-- resuming after n loses nothing.
ALTER TABLE accounts ADD COLUMN last_event_id BIGINT NOT NULL DEFAULT 0;
CREATE TABLE events (
    account_id          BIGINT      NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    id                  BIGINT      NOT NULL,
    -- message.received, reply.created, reply.failed, operator.message, ai.disabled, ai.enabled
    kind                TEXT        NOT NULL,
    conversation_id     UUID        NOT NULL,
    assistant_id        BIGINT      NOT NULL,
    customer_identifier TEXT        NOT NULL,
    -- The message, as the event's JSON shows it, where there is one.
    message             JSONB,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, id)
);
-- Old events are purged by age.
CREATE INDEX events_created_at ON events (created_at);

-- Opted out (an SMS STOP): no AI reply, no send, no charge until START.
ALTER TABLE conversations ADD COLUMN opted_out BOOLEAN NOT NULL DEFAULT false;
-- Token totals beside total_cost, and the model of each reply, for usage.
ALTER TABLE conversations ADD COLUMN prompt_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE conversations ADD COLUMN completion_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN model TEXT;

-- A person of the business writes too.
ALTER TABLE messages DROP CONSTRAINT messages_role_check;
ALTER TABLE messages ADD CONSTRAINT messages_role_check CHECK (role IN ('user', 'assistant', 'operator'));
