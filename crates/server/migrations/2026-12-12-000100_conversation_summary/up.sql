-- Memory past the prompt budget: the turns that no longer fit a prompt are folded into a
-- rolling summary by the assistant's model, after a reply (reply/memory.rs).
ALTER TABLE conversations
    ADD COLUMN summary               TEXT,
    -- The newest place folded into `summary`: a prompt's history starts after it.
    ADD COLUMN summary_through_seq   BIGINT      NOT NULL DEFAULT 0,
    -- Held by the process folding more turns in, so two never ask the model for the same
    -- turns; past it (the process died), another may.
    ADD COLUMN summary_claimed_until TIMESTAMPTZ;

-- Each fold: the model call that took a summary from `after_seq` to `through_seq`, billed
-- like a reply and counted in usage. A range's start is folded once: the key says so.
CREATE TABLE summary_folds (
    conversation_id   UUID        NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    after_seq         BIGINT      NOT NULL,
    through_seq       BIGINT      NOT NULL CHECK (through_seq > after_seq),
    -- No foreign key: its check would lock the account's row, the hottest.
    account_id        BIGINT      NOT NULL,
    model             TEXT        NOT NULL,
    prompt_tokens     INTEGER     NOT NULL,
    completion_tokens INTEGER     NOT NULL,
    -- What the balance was charged, in hundred-millionths.
    cost              BIGINT      NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (conversation_id, after_seq)
);
-- Usage reads an account's folds by day.
CREATE INDEX summary_folds_usage ON summary_folds (account_id, created_at);
