-- What a settled reply still owes its account's row: the unused rest of its reservation and
-- its `reply.created` event. The settlement stores it (a commit that waits for the disk but
-- locks no row shared by the account's replies); the reply then pays it at once in a
-- transaction of its own that does not wait for the disk, or, after a crash, the sweep does.
CREATE TABLE settlements_due (
    message_id BIGINT PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    conversation_id UUID NOT NULL,
    reply_seq BIGINT NOT NULL,
    refund BIGINT NOT NULL CHECK (refund >= 0),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
