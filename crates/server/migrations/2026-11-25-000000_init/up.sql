-- Money columns count hundred-millionths of the currency unit (see anyreply_core::Money).

CREATE TABLE accounts (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT        NOT NULL,
    email       TEXT,
    balance     BIGINT      NOT NULL DEFAULT 0 CHECK (balance >= 0),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id           BIGSERIAL PRIMARY KEY,
    account_id   BIGINT      NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    -- The key's first characters, shown to operators and used to find the key.
    prefix       TEXT        NOT NULL UNIQUE,
    -- SHA-256 of the whole key; the key itself is never stored.
    secret_hash  BYTEA       NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at   TIMESTAMPTZ,
    -- Fixed-window rate limit of generate-reply: the minute (Unix time / 60) and its count.
    rate_window  BIGINT      NOT NULL DEFAULT 0,
    rate_count   INTEGER     NOT NULL DEFAULT 0
);

CREATE TABLE assistants (
    id               BIGSERIAL PRIMARY KEY,
    account_id       BIGINT           NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name             TEXT             NOT NULL,
    system_prompt    TEXT             NOT NULL DEFAULT '',
    initial_message  TEXT,
    variables        JSONB            NOT NULL DEFAULT '{}',
    llm_model        TEXT             NOT NULL,
    llm_temperature  DOUBLE PRECISION NOT NULL DEFAULT 0.7,
    tool_ids         BIGINT[]         NOT NULL DEFAULT '{}',
    created_at       TIMESTAMPTZ      NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ      NOT NULL DEFAULT now()
);
CREATE INDEX assistants_account ON assistants (account_id, id);

CREATE TABLE conversations (
    id                   UUID        PRIMARY KEY,
    account_id           BIGINT      NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    assistant_id         BIGINT      NOT NULL REFERENCES assistants (id) ON DELETE CASCADE,
    customer_identifier  TEXT        NOT NULL,
    kind                 TEXT        NOT NULL DEFAULT 'api',
    -- The conversation's own variables; the assistant's defaults are not copied in.
    variables            JSONB       NOT NULL DEFAULT '{}',
    ai_enabled           BOOLEAN     NOT NULL DEFAULT TRUE,
    message_count        BIGINT      NOT NULL DEFAULT 0,
    total_cost           BIGINT      NOT NULL DEFAULT 0,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (assistant_id, customer_identifier)
);
CREATE INDEX conversations_listing ON conversations (account_id, created_at DESC, id DESC);

CREATE TABLE messages (
    id                 BIGSERIAL PRIMARY KEY,
    conversation_id    UUID        NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    -- The customer message this one belongs to: its own id for a customer message, the
    -- answered message's id for a reply. History reads in (turn_id, id) order, so a reply
    -- follows its question even when later questions arrived while it was produced.
    turn_id            BIGINT      NOT NULL,
    role               TEXT        NOT NULL CHECK (role IN ('user', 'assistant')),
    content            TEXT        NOT NULL,
    -- The request's variables, on a customer message: merged into the conversation's when its
    -- reply is recorded, so a reply never sees the variables of a later message.
    variables          JSONB,
    function_calls     JSONB,
    cost               BIGINT,
    prompt_tokens      INTEGER,
    completion_tokens  INTEGER,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX messages_history ON messages (conversation_id, turn_id, id);

-- Customer messages whose reply is being produced. A conversation's replies are produced one
-- at a time in message order, across every server process: a message waits while an earlier
-- one of its conversation is listed here with a live lease.
CREATE TABLE pending_replies (
    message_id       BIGINT      PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    conversation_id  UUID        NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    account_id       BIGINT      NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    -- Money reserved from the balance for this reply, settled when it is recorded.
    hold             BIGINT      NOT NULL,
    -- Renewed by the process producing the reply; past it, the process is presumed dead.
    lease_until      TIMESTAMPTZ NOT NULL
);
CREATE INDEX pending_replies_conversation ON pending_replies (conversation_id, message_id);
