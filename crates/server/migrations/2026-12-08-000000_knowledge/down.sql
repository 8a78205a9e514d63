ALTER TABLE messages DROP COLUMN knowledge;
ALTER TABLE assistants DROP COLUMN knowledge_mode, DROP COLUMN knowledge_base_id;
DROP TABLE knowledge_passages;
DROP TABLE knowledge_documents;
DROP TABLE knowledge_bases;
