ALTER TABLE widgets DROP COLUMN tools_enabled;
DROP TABLE widget_addresses;
DROP TABLE widget_visitor_tokens;
CREATE INDEX widgets_origins ON widgets USING gin (allowed_origins);
