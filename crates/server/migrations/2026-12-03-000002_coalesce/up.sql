-- Burst coalescing: a customer's messages less than this many milliseconds apart get one reply.
ALTER TABLE assistants
    ADD COLUMN coalesce_ms INTEGER NOT NULL DEFAULT 0 CHECK (coalesce_ms BETWEEN 0 AND 10000);
