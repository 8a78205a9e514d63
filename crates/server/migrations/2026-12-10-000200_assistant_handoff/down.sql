ALTER TABLE events DROP COLUMN reason;
ALTER TABLE assistants
    DROP COLUMN handoff_enabled,
    DROP COLUMN handoff_instructions,
    DROP COLUMN handoff_message;
