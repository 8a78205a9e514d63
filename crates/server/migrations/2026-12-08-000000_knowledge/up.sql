-- Knowledge bases: the business's documents and websites, cut into passages that assistants
-- are given (in the prompt, or through a `search_knowledge` tool). Full-text search in the
-- knowledge base's text-search configuration.

-- A GIN index on (knowledge_base_id, search): a search reads its own knowledge base's
-- entries only, however many others there are, whatever the planner's statistics say.
CREATE EXTENSION IF NOT EXISTS btree_gin;

CREATE TABLE knowledge_bases (
    id          BIGSERIAL   PRIMARY KEY,
    account_id  BIGINT      NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name        TEXT        NOT NULL,
    description TEXT,
    -- A text-search configuration's name (`pg_ts_config`): `simple`, `english`, `german`, ...
    language    TEXT        NOT NULL DEFAULT 'simple',
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX knowledge_bases_account ON knowledge_bases (account_id, id);

CREATE TABLE knowledge_documents (
    id                   BIGSERIAL   PRIMARY KEY,
    knowledge_base_id    BIGINT      NOT NULL REFERENCES knowledge_bases (id) ON DELETE CASCADE,
    account_id           BIGINT      NOT NULL,
    name                 TEXT        NOT NULL,
    description          TEXT,
    kind                 TEXT        NOT NULL CHECK (kind IN ('website', 'pdf', 'txt', 'docx')),
    -- An upload's bytes, kept so that a document is processed again after a crash or a
    -- change of language.
    content              BYTEA,
    url                  TEXT,
    links                TEXT[]      NOT NULL DEFAULT '{}',
    relative_links_limit INTEGER,
    status               TEXT        NOT NULL DEFAULT 'processing'
                                     CHECK (status IN ('processing', 'active', 'failed')),
    reason               TEXT,
    passages_count       INTEGER     NOT NULL DEFAULT 0,
    -- A process is working on it until then; past it, any process takes it up again.
    lease_until          TIMESTAMPTZ,
    attempts             INTEGER     NOT NULL DEFAULT 0,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX knowledge_documents_base ON knowledge_documents (knowledge_base_id, id);
CREATE INDEX knowledge_documents_processing ON knowledge_documents (id)
    WHERE status = 'processing';

CREATE TABLE knowledge_passages (
    id                BIGSERIAL PRIMARY KEY,
    document_id       BIGINT    NOT NULL REFERENCES knowledge_documents (id) ON DELETE CASCADE,
    knowledge_base_id BIGINT    NOT NULL,
    position          INTEGER   NOT NULL,
    heading           TEXT,
    body              TEXT      NOT NULL,
    -- The page a website's passage was read from.
    url               TEXT,
    tokens            INTEGER   NOT NULL,
    -- The heading weighted A, the text D (ts_rank_cd counts a heading's words more).
    search            TSVECTOR  NOT NULL
);
CREATE INDEX knowledge_passages_search ON knowledge_passages USING gin (knowledge_base_id, search);
CREATE INDEX knowledge_passages_document ON knowledge_passages (document_id, position);

ALTER TABLE assistants
    ADD COLUMN knowledge_base_id BIGINT REFERENCES knowledge_bases (id) ON DELETE SET NULL,
    ADD COLUMN knowledge_mode    TEXT NOT NULL DEFAULT 'prompt'
                                 CHECK (knowledge_mode IN ('prompt', 'function_call'));
CREATE INDEX assistants_knowledge_base ON assistants (knowledge_base_id)
    WHERE knowledge_base_id IS NOT NULL;

-- The passages a reply was given: `[{document_id, document_name, passage_id}]`.
ALTER TABLE messages ADD COLUMN knowledge JSONB;
