ALTER TABLE knowledge_bases DROP COLUMN passages_count;
ALTER INDEX knowledge_passages_search RESET (fastupdate);
