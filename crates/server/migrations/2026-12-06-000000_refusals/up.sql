-- Refuses the statement that calls it, as a CHECK constraint named `refusal` would: for the
-- refusals no CHECK can state (a full queue, a revoked key). A statement pipelined ahead of its
-- transaction's COMMIT can refuse only by failing (the transaction then rolls back whole), and
-- the server tells refusals apart by the constraint's name. Returns nothing; typed bigint to
-- stand in any CASE branch.
CREATE FUNCTION anyreply_refuse(refusal text) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'refused: %', refusal USING ERRCODE = 'check_violation', CONSTRAINT = refusal;
END
$$;
