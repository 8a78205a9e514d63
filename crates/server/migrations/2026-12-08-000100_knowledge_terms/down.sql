DROP TABLE knowledge_terms;
