DROP INDEX tools_account;
DROP TABLE tool_calls;
DROP INDEX messages_history;
CREATE INDEX messages_history ON messages (conversation_id, turn_id, id);
ALTER TABLE messages DROP COLUMN seq;
ALTER TABLE conversations DROP COLUMN next_seq;
