DELETE FROM messages WHERE role = 'operator';
ALTER TABLE messages DROP CONSTRAINT messages_role_check;
ALTER TABLE messages ADD CONSTRAINT messages_role_check CHECK (role IN ('user', 'assistant'));
ALTER TABLE messages DROP COLUMN model;
ALTER TABLE conversations DROP COLUMN completion_tokens;
ALTER TABLE conversations DROP COLUMN prompt_tokens;
ALTER TABLE conversations DROP COLUMN opted_out;
DROP TABLE events;
ALTER TABLE accounts DROP COLUMN last_event_id;
