-- The team inbox: who a conversation is assigned to, when it asked for a person, internal notes,
-- and who wrote each operator message.

-- The operator a conversation is assigned to (none: NULL; a removed operator's go back to none).
ALTER TABLE conversations
    ADD COLUMN assignee_id BIGINT REFERENCES operators (id) ON DELETE SET NULL,
    -- Set when the model hands over (`handoff.requested`), cleared when the AI is turned on
    -- again: with no assignee, the conversation "needs a human".
    ADD COLUMN handoff_requested_at TIMESTAMPTZ;
-- The inbox's views other than "All", each a small part of an account's conversations, read
-- (and counted) through their own partial index.
CREATE INDEX conversations_assignee ON conversations (assignee_id, created_at)
    WHERE assignee_id IS NOT NULL;
CREATE INDEX conversations_unassigned ON conversations (account_id, created_at)
    WHERE assignee_id IS NULL AND NOT ai_enabled;
CREATE INDEX conversations_needing_a_human ON conversations (account_id, created_at)
    WHERE handoff_requested_at IS NOT NULL AND assignee_id IS NULL;

-- Who wrote an operator message: the operator's id (kept after they are removed, so no key)
-- and their name as it was; an API key's message has a name and no id.
ALTER TABLE messages
    ADD COLUMN author_operator_id BIGINT,
    ADD COLUMN author_name TEXT;

-- Internal notes: seen by operators in the timeline, never by the customer or the model.
CREATE TABLE conversation_notes (
    id                 BIGSERIAL   PRIMARY KEY,
    conversation_id    UUID        NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    author_operator_id BIGINT,
    author_name        TEXT        NOT NULL,
    content            TEXT        NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX conversation_notes_conversation ON conversation_notes (conversation_id, id);

-- What an event says beyond its message: a note, an assignee, who acted.
ALTER TABLE events ADD COLUMN detail JSONB;
