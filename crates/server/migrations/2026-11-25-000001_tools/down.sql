ALTER TABLE assistants DROP COLUMN llm_provider, DROP COLUMN fallback_llm_provider, DROP COLUMN fallback_llm_model;
DROP TABLE tools;
