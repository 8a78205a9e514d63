-- A filtered event stream catching up (from its Last-Event-ID, or after falling behind) reads
-- only the events it sends: the account's events of one assistant, or of one conversation, in
-- id order. Live streams are fed in memory and read nothing (see events.rs).
CREATE INDEX events_by_assistant ON events (account_id, assistant_id, id);
CREATE INDEX events_by_conversation ON events (account_id, conversation_id, id);
