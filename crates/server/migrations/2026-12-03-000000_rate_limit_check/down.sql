ALTER TABLE api_keys DROP CONSTRAINT api_keys_within_rate_limit, DROP COLUMN rate_limit;
