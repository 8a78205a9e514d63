-- How many passages of a knowledge base hold each word: a search finds passages by the
-- query's rarer words (inverse document frequency), and reads their counts here rather than
-- counting through the search index, whose knowledge-base key matches every passage of the
-- base. Kept by the statements that store and delete passages, under the knowledge base's
-- row lock.
CREATE TABLE knowledge_terms (
    knowledge_base_id BIGINT  NOT NULL REFERENCES knowledge_bases (id) ON DELETE CASCADE,
    lexeme            TEXT    NOT NULL,
    passages          INTEGER NOT NULL,
    PRIMARY KEY (knowledge_base_id, lexeme)
);

INSERT INTO knowledge_terms (knowledge_base_id, lexeme, passages)
SELECT p.knowledge_base_id, u.lexeme, count(*)
FROM knowledge_passages p, unnest(p.search) u
GROUP BY p.knowledge_base_id, u.lexeme;
