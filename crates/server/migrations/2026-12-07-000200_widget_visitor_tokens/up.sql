-- A widget's visitors: each holds a token the server issued with their first message (only
-- its SHA-256 is kept; the token has 256 random bits, so a slow hash would add nothing) and
-- is known elsewhere by `public_id`, its conversation's customer `web:<public_id>`. Visitors
-- of the browser-chosen ids before this have no row: their next message makes them a new
-- visitor (see the README's widget section for why).
CREATE TABLE widget_visitor_tokens (
    token_hash BYTEA       PRIMARY KEY,
    widget_id  BIGINT      NOT NULL REFERENCES widgets (id) ON DELETE CASCADE,
    public_id  TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (widget_id, public_id)
);

-- Each client address's requests to `/api/widget/` in the current minute (of the database's
-- clock), over every widget: preflights carry no key. Unlogged: a count lost in a crash
-- costs nothing, and every widget request writes it.
CREATE UNLOGGED TABLE widget_addresses (
    address     TEXT    PRIMARY KEY,
    rate_window BIGINT  NOT NULL,
    rate_count  INTEGER NOT NULL
);

-- Whether the widget's replies may call the assistant's tools: off unless the business
-- chose so, as anyone can write to a widget.
ALTER TABLE widgets ADD COLUMN tools_enabled BOOLEAN NOT NULL DEFAULT false;

-- Preflights no longer ask whether any widget lists an origin (each request's key is checked).
DROP INDEX widgets_origins;
