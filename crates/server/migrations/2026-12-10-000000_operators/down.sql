DELETE FROM console_sessions WHERE operator_id IS NOT NULL;
ALTER TABLE console_sessions
    DROP CONSTRAINT console_sessions_one_holder,
    DROP COLUMN operator_id,
    ALTER COLUMN api_key_id SET NOT NULL;
DROP TABLE operator_password_links;
DROP TABLE operators;
