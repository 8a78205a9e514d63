-- What a settled reply still owes its account's row: the unused rest of its reservation and
-- its `reply.created` event. The settlement stores it (a commit that waits for the disk but
-- locks no row shared by the account's replies); the reply then pays it at once in a
-- transaction of its own that does not wait for the disk, or, after a crash, the sweep does.
CREATE TABLE settlements_due (
    message_id BIGINT PRIMARY KEY,
    account_id BIGINT NOT NULL,
    conversation_id UUID NOT NULL,
    reply_seq BIGINT NOT NULL,
    refund BIGINT NOT NULL CHECK (refund >= 0),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Rows that every reply (or tool call) writes do not reference the account's row: each such
-- foreign key's check takes a KEY SHARE lock on that row, which the account's other replies
-- update all the time, and so turned its every update into a new multixact of all its
-- lockers. Their account ids come from the authenticated caller, and accounts are never
-- deleted.
ALTER TABLE events DROP CONSTRAINT events_account_id_fkey;
ALTER TABLE pending_replies DROP CONSTRAINT pending_replies_account_id_fkey;
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_account_id_fkey;
ALTER TABLE tool_calls DROP CONSTRAINT tool_calls_account_id_fkey;

-- A queued reply's row is written and deleted by every reply, by the engine alone, always
-- beside its message and conversation (neither is ever deleted under it); its foreign keys
-- cost two lookups per reply and guarded nothing.
ALTER TABLE pending_replies DROP CONSTRAINT pending_replies_message_id_fkey;
ALTER TABLE pending_replies DROP CONSTRAINT pending_replies_conversation_id_fkey;
