-- History in a per-conversation sequence: a customer message takes `next_seq` and keeps the
-- number after it for its reply, so history order is `seq` order and a page of history is a
-- bounded range of the index, whatever the planner's statistics say. Numbers of removed
-- (unanswered) messages stay unused.
ALTER TABLE conversations ADD COLUMN next_seq BIGINT NOT NULL DEFAULT 1;
ALTER TABLE messages ADD COLUMN seq BIGINT;
-- Existing history keeps its (turn_id, id) order; even numbers leave room for the reply of a
-- message still queued.
UPDATE messages m SET seq = 2 * n.position
FROM (SELECT id, row_number() OVER (PARTITION BY conversation_id ORDER BY turn_id, id) AS position
      FROM messages) AS n
WHERE m.id = n.id;
UPDATE conversations c SET next_seq = coalesce((SELECT max(seq) + 2 FROM messages WHERE conversation_id = c.id), 1);
ALTER TABLE messages ALTER COLUMN seq SET NOT NULL;
DROP INDEX messages_history;
CREATE UNIQUE INDEX messages_history ON messages (conversation_id, seq);

-- The tool-call journal: each call is written before it is made and its result after, so a
-- retry of the same request (same idempotency key) reuses what was done instead of calling
-- the endpoint again. Rows outlive a failed turn's message on purpose (no foreign key).
CREATE TABLE tool_calls (
    id               BIGSERIAL   PRIMARY KEY,
    account_id       BIGINT      NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    -- The request's Idempotency-Key, if it sent one.
    idempotency_key  TEXT,
    -- The customer message being answered.
    message_id       BIGINT      NOT NULL,
    name             TEXT        NOT NULL,
    arguments        JSONB       NOT NULL,
    -- NULL until the call returned: a row without a result is a call whose outcome is unknown.
    result           JSONB,
    is_error         BOOLEAN,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX tool_calls_key ON tool_calls (account_id, idempotency_key, id) WHERE idempotency_key IS NOT NULL;
CREATE INDEX tool_calls_age ON tool_calls (created_at);

CREATE INDEX tools_account ON tools (account_id, id);
