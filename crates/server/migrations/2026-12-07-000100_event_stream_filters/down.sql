DROP INDEX events_by_conversation;
DROP INDEX events_by_assistant;
