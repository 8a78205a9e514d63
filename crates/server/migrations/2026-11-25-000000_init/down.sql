DROP TABLE pending_replies;
DROP TABLE messages;
DROP TABLE conversations;
DROP TABLE assistants;
DROP TABLE api_keys;
DROP TABLE accounts;
