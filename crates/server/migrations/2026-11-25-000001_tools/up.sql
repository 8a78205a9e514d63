-- Functions ("tools") the model may call: HTTP endpoints an account configures.
CREATE TABLE tools (
    id            BIGSERIAL PRIMARY KEY,
    account_id    BIGINT      NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name          TEXT        NOT NULL,
    description   TEXT        NOT NULL,
    endpoint      TEXT        NOT NULL,
    method        TEXT        NOT NULL CHECK (method IN ('GET', 'POST', 'PUT', 'PATCH', 'DELETE')),
    timeout_secs  INTEGER     NOT NULL CHECK (timeout_secs BETWEEN 1 AND 30),
    -- [{"name", "value"}]; values are the customer's secrets and are never sent back in full.
    headers       JSONB       NOT NULL DEFAULT '[]',
    -- [{"name", "type", "description", "required"}]
    schema        JSONB       NOT NULL DEFAULT '[]',
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (account_id, name)
);

-- Which provider speaks for the assistant, and the model that answers when it cannot.
ALTER TABLE assistants
    ADD COLUMN llm_provider          TEXT NOT NULL DEFAULT 'openai' CHECK (llm_provider IN ('openai', 'anthropic')),
    ADD COLUMN fallback_llm_provider TEXT CHECK (fallback_llm_provider IN ('openai', 'anthropic')),
    ADD COLUMN fallback_llm_model    TEXT;
