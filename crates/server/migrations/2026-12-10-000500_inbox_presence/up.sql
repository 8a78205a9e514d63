-- Who has a conversation open in the console right now: each open page says so every 20
-- seconds, and a row older than a minute is someone who left.
CREATE TABLE conversation_viewers (
    conversation_id UUID        NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    -- The console session (its token's hash): one row per signed-in browser.
    session_hash    BYTEA       NOT NULL,
    name            TEXT        NOT NULL,
    seen_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (conversation_id, session_hash)
);
