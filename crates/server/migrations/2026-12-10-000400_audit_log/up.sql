-- Who did what to an account, and when: sign-ins, keys, operators, assistants, tools,
-- knowledge, takeovers. Written in the transaction of the change it records; kept 180 days
-- (the minute's sweep purges it once a day).
CREATE TABLE audit_log (
    account_id        BIGINT      NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    id                BIGINT      GENERATED ALWAYS AS IDENTITY,
    at                TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Who: an operator, an API key, the owner's API-key session in the console, the command
    -- line, or someone not signed in (a failed sign-in).
    actor_type        TEXT        NOT NULL
        CHECK (actor_type IN ('operator', 'api_key', 'console_api_key', 'cli', 'anonymous')),
    -- No foreign keys: the entry outlives the operator or key it names.
    actor_operator_id BIGINT,
    -- The operator's name as it was then.
    actor_name        TEXT,
    actor_api_key_id  BIGINT,
    -- The key's first 12 characters, as `key revoke` and the console name it.
    actor_key_prefix  TEXT,
    action            TEXT        NOT NULL,
    target_type       TEXT,
    target_id         TEXT,
    details           JSONB       NOT NULL DEFAULT '{}',
    -- Pages newest first per account walk this backwards.
    PRIMARY KEY (account_id, id)
);
-- Pages of one action (`?action=`).
CREATE INDEX audit_log_action ON audit_log (account_id, action, id);
-- The daily purge of entries past their 180 days.
CREATE INDEX audit_log_at ON audit_log (at);
