-- The people of an account who sign in to the console with an email and a password, each
-- with a role: `agent` answers customers, `admin` also runs assistants, tools, knowledge,
-- widgets and webhooks, `owner` also API keys and operators.
CREATE TABLE operators (
    id            BIGSERIAL   PRIMARY KEY,
    account_id    BIGINT      NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    -- Lower-cased: one address signs in to one operator, across accounts.
    email         TEXT        NOT NULL UNIQUE CHECK (email = lower(email)),
    name          TEXT        NOT NULL,
    role          TEXT        NOT NULL CHECK (role IN ('owner', 'admin', 'agent')),
    -- An argon2id PHC string; NULL until the operator sets a password through their link.
    password_hash TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX operators_account ON operators (account_id, id);

-- One-time links to set a password (printed by `operator create`, answered by the API).
-- Only a SHA-256 of the link's token is stored.
CREATE TABLE operator_password_links (
    token_hash  BYTEA       PRIMARY KEY,
    operator_id BIGINT      NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    expires_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX operator_password_links_operator ON operator_password_links (operator_id);

-- A console session is an operator's or, for the account's owner, an API key's. Removing the
-- operator ends their sessions; their role is read on every request.
ALTER TABLE console_sessions
    ALTER COLUMN api_key_id DROP NOT NULL,
    ADD COLUMN operator_id BIGINT REFERENCES operators (id) ON DELETE CASCADE,
    ADD CONSTRAINT console_sessions_one_holder
        CHECK ((api_key_id IS NULL) <> (operator_id IS NULL));
CREATE INDEX console_sessions_operator ON console_sessions (operator_id);
