ALTER TABLE events DROP COLUMN detail;
DROP TABLE conversation_notes;
ALTER TABLE messages DROP COLUMN author_operator_id, DROP COLUMN author_name;
ALTER TABLE conversations DROP COLUMN assignee_id, DROP COLUMN handoff_requested_at;
