-- The rate limit as a constraint, like the balance's (CHECK (balance >= 0)): the statements
-- that count a reply's call and take its money are sent with their transaction's COMMIT, and
-- refuse by failing. `rate_limit` is the limit the window was counted under last.
ALTER TABLE api_keys
    ADD COLUMN rate_limit INTEGER NOT NULL DEFAULT 2147483647,
    ADD CONSTRAINT api_keys_within_rate_limit CHECK (rate_count <= rate_limit);
