-- Support stats (`GET /api/user/stats`, the dashboard) count an account's events of three kinds
-- (message.received, reply.created, handoff.requested) in a range of days. With this index each
-- kind is one range of (account, kind, time): the cost follows what is counted, never the
-- account's other events, nor other accounts' (`events_created_at` spans them all, the primary
-- key runs by id, not time), and needs no planner statistics (tables here are never analyzed).
-- The price: one more index entry per event written.
CREATE INDEX events_by_kind ON events (account_id, kind, created_at);
