DROP TABLE model_calls;
DROP TABLE conversation_endings;
DROP INDEX conversations_ending;
ALTER TABLE conversations DROP COLUMN ends_at, DROP COLUMN ended_at, DROP COLUMN extracted_variables;
ALTER TABLE assistants
    DROP COLUMN conversation_inactivity_timeout,
    DROP COLUMN post_call_schema,
    DROP COLUMN conversation_ended_webhook_url,
    DROP COLUMN conversation_ended_webhook_secret;
