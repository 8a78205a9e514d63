-- Handoff: an assistant may hand a conversation to a person through a built-in
-- `transfer_to_human` tool. Settings as columns, like the assistant's others; empty text means
-- "use the default" (instructions) or "use the model's own words" (message).
ALTER TABLE assistants
    ADD COLUMN handoff_enabled      BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN handoff_instructions TEXT    NOT NULL DEFAULT '',
    ADD COLUMN handoff_message      TEXT    NOT NULL DEFAULT '';

-- Why the model handed over (`handoff.requested`); null for every other event.
ALTER TABLE events ADD COLUMN reason TEXT;
