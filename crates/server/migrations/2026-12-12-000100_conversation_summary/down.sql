DROP TABLE summary_folds;
ALTER TABLE conversations
    DROP COLUMN summary_claimed_until,
    DROP COLUMN summary_through_seq,
    DROP COLUMN summary;
