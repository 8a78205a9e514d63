-- Conversations that end (Famulor's conversation lifecycle): an assistant's inactivity
-- timeout ends a conversation that long after its last message; its post-call schema is
-- extracted from it then, and its conversation-ended webhook told.
ALTER TABLE assistants
    ADD COLUMN conversation_inactivity_timeout  INTEGER
        CHECK (conversation_inactivity_timeout BETWEEN 1 AND 10080),
    ADD COLUMN post_call_schema                 JSONB NOT NULL DEFAULT '[]',
    ADD COLUMN conversation_ended_webhook_url    TEXT,
    -- Signs the conversation-ended webhook's posts (Standard Webhooks): 32 random bytes (two
    -- v4 UUIDs' worth), each assistant's own.
    ADD COLUMN conversation_ended_webhook_secret TEXT NOT NULL DEFAULT (
        'whsec_' || encode(decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'), 'base64'));

-- `ends_at`: when the conversation ends unless a message comes first (set with each message
-- from the assistant's timeout; null: never). `ended_at`: when it ended; null while active.
ALTER TABLE conversations
    ADD COLUMN ends_at             TIMESTAMPTZ,
    ADD COLUMN ended_at            TIMESTAMPTZ,
    ADD COLUMN extracted_variables JSONB NOT NULL DEFAULT '{}';

-- The sweep's one read: the conversations due to end, soonest first, whatever the table's
-- size or statistics.
CREATE INDEX conversations_ending ON conversations (ends_at) WHERE ends_at IS NOT NULL;

-- The work an ending leaves, done by any server process (leased through `due_at`, so a dead
-- one's is taken again): `extract` the post-call schema and write `conversation.ended`, then
-- `notify` the assistant's webhook, retried on failure.
CREATE TABLE conversation_endings (
    conversation_id UUID        NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    ended_at        TIMESTAMPTZ NOT NULL,
    account_id      BIGINT      NOT NULL,
    stage           TEXT        NOT NULL CHECK (stage IN ('extract', 'notify')),
    attempts        INTEGER     NOT NULL DEFAULT 0,
    due_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The webhook's body, made once, so every attempt sends the same bytes.
    payload         TEXT,
    PRIMARY KEY (conversation_id, ended_at)
);
CREATE INDEX conversation_endings_due ON conversation_endings (due_at);

-- Model calls other than replies (a conversation's extraction when it ends): billed like
-- replies, and counted in usage beside them.
CREATE TABLE model_calls (
    id                BIGSERIAL   PRIMARY KEY,
    account_id        BIGINT      NOT NULL,
    conversation_id   UUID        NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    purpose           TEXT        NOT NULL,
    model             TEXT        NOT NULL,
    prompt_tokens     BIGINT      NOT NULL,
    completion_tokens BIGINT      NOT NULL,
    cost              BIGINT      NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX model_calls_account ON model_calls (account_id, created_at);
