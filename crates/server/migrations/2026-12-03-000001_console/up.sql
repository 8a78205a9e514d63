-- The operator console's sessions: a browser signed in with an API key. Only a SHA-256 of the
-- session's cookie is stored; revoking the key ends its sessions (they are read through it).
CREATE TABLE console_sessions (
    token_hash   BYTEA       PRIMARY KEY,
    account_id   BIGINT      NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    api_key_id   BIGINT      NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    -- Sent back in every form of the session.
    csrf_token   TEXT        NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX console_sessions_api_key ON console_sessions (api_key_id);

-- Failed sign-ins per client address, in fixed five-minute windows.
CREATE TABLE console_sign_in_failures (
    client   TEXT    PRIMARY KEY,
    window_start BIGINT  NOT NULL,
    failures INTEGER NOT NULL
);
