-- Web chat widgets: a publishable key (`arpk_…`) that can do nothing but chat with one
-- assistant from the listed origins.
CREATE TABLE widgets (
    id              BIGSERIAL   PRIMARY KEY,
    account_id      BIGINT      NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    assistant_id    BIGINT      NOT NULL REFERENCES assistants (id) ON DELETE CASCADE,
    public_key      TEXT        NOT NULL UNIQUE,
    -- Canonical origins (`https://shop.example.com`), as browsers send them in `Origin`.
    allowed_origins TEXT[]      NOT NULL,
    -- The widget's replies are counted (and rate-limited as one caller) under an API key of
    -- its own, whose secret was never shown to anyone: it authenticates nothing.
    api_key_id      BIGINT      NOT NULL REFERENCES api_keys (id),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX widgets_account ON widgets (account_id);
-- CORS preflights carry no key: they ask whether any widget lists the origin.
CREATE INDEX widgets_origins ON widgets USING gin (allowed_origins);

-- Each visitor's messages in the current minute (of the database's clock).
CREATE TABLE widget_visitors (
    widget_id   BIGINT  NOT NULL REFERENCES widgets (id) ON DELETE CASCADE,
    visitor_id  TEXT    NOT NULL,
    rate_window BIGINT  NOT NULL,
    rate_count  INTEGER NOT NULL,
    PRIMARY KEY (widget_id, visitor_id)
);
