-- The search index is written through at once. GIN's default pending list (fast update) is
-- merged only by VACUUM or when it reaches 4 MB, and every search reads all of it: with
-- autovacuum off, a base of a few thousand passages spent more in that list (3 ms) than in
-- the index itself (0.2 ms). Storing passages is slower for it; searching, which matters
-- more, no longer depends on when the table was last vacuumed.
ALTER INDEX knowledge_passages_search SET (fastupdate = off);
SELECT gin_clean_pending_list('knowledge_passages_search'::regclass);

-- A knowledge base's count of passages, which a search divides the words' counts by: kept
-- with `knowledge_terms`, under the knowledge base's row lock, rather than summed over its
-- documents by every search.
ALTER TABLE knowledge_bases ADD COLUMN passages_count BIGINT NOT NULL DEFAULT 0;
UPDATE knowledge_bases b
SET passages_count = (SELECT count(*) FROM knowledge_passages p WHERE p.knowledge_base_id = b.id);
