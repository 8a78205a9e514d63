ALTER TABLE messages DROP COLUMN model;
ALTER TABLE conversations DROP COLUMN completion_tokens;
ALTER TABLE conversations DROP COLUMN prompt_tokens;
ALTER TABLE conversations DROP COLUMN opted_out;
DROP TABLE events;
ALTER TABLE accounts DROP COLUMN last_event_id;
