ALTER TABLE assistants DROP COLUMN coalesce_ms;
