-- Initial schema of the handoff bridge (SQLite).
--
-- Every time is a BIGINT holding Unix milliseconds (UTC); 0 means "not set"
-- (the zero time.Time). Keep this file identical in meaning to
-- ../postgres/00001_init.sql. Migrations are append-only: never edit a merged file.

-- +goose Up
CREATE TABLE sessions (
    id                  TEXT    NOT NULL PRIMARY KEY,
    conversation_id     TEXT    NOT NULL,
    state               TEXT    NOT NULL,
    close_reason        TEXT    NOT NULL DEFAULT '',
    user_id             TEXT    NOT NULL DEFAULT '',
    user_name           TEXT    NOT NULL DEFAULT '',
    user_aad_id         TEXT    NOT NULL DEFAULT '',
    user_email          TEXT    NOT NULL DEFAULT '',
    tenant_id           TEXT    NOT NULL DEFAULT '',
    agent_chat_id       TEXT    NOT NULL DEFAULT '',
    queue               TEXT    NOT NULL DEFAULT '',
    reason              TEXT    NOT NULL DEFAULT '',
    nonce               TEXT    NOT NULL DEFAULT '',
    created_at          BIGINT  NOT NULL DEFAULT 0,
    queued_at           BIGINT  NOT NULL DEFAULT 0,
    live_at             BIGINT  NOT NULL DEFAULT 0,
    closed_at           BIGINT  NOT NULL DEFAULT 0,
    updated_at          BIGINT  NOT NULL DEFAULT 0,
    last_agent_activity BIGINT  NOT NULL DEFAULT 0
);
-- A conversation has at most one session that is not closed.
CREATE UNIQUE INDEX sessions_open_conversation_key ON sessions (conversation_id) WHERE state <> 'closed';
CREATE INDEX sessions_conversation_idx ON sessions (conversation_id, created_at);
CREATE INDEX sessions_agent_chat_idx ON sessions (agent_chat_id) WHERE agent_chat_id <> '';
CREATE INDEX sessions_state_idx ON sessions (state, created_at, id);

CREATE TABLE messages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id  TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    source      TEXT    NOT NULL,
    -- NULL when the source gave no id: such messages are never de-duplicated.
    external_id TEXT,
    author      TEXT    NOT NULL DEFAULT '',
    body        TEXT    NOT NULL DEFAULT '',
    buttons     TEXT,   -- JSON array of {title, payload}; NULL when none
    image_url   TEXT    NOT NULL DEFAULT '',
    is_system   INTEGER NOT NULL DEFAULT 0 CHECK (is_system IN (0, 1)),
    sent_at     BIGINT  NOT NULL DEFAULT 0,
    created_at  BIGINT  NOT NULL DEFAULT 0,
    CONSTRAINT messages_delivery_key UNIQUE (session_id, source, external_id)
);
CREATE INDEX messages_session_order_idx ON messages (session_id, sent_at, id);

CREATE TABLE conversation_refs (
    conversation_id   TEXT   NOT NULL PRIMARY KEY,
    service_url       TEXT   NOT NULL DEFAULT '',
    channel_id        TEXT   NOT NULL DEFAULT '',
    conversation_type TEXT   NOT NULL DEFAULT '',
    tenant_id         TEXT   NOT NULL DEFAULT '',
    bot_id            TEXT   NOT NULL DEFAULT '',
    bot_name          TEXT   NOT NULL DEFAULT '',
    user_id           TEXT   NOT NULL DEFAULT '',
    user_name         TEXT   NOT NULL DEFAULT '',
    user_aad_id       TEXT   NOT NULL DEFAULT '',
    locale            TEXT   NOT NULL DEFAULT '',
    updated_at        BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE cursors (
    session_id TEXT   NOT NULL PRIMARY KEY REFERENCES sessions (id) ON DELETE CASCADE,
    cursor_at  BIGINT NOT NULL,
    updated_at BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id      TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    conversation_id TEXT    NOT NULL,
    lane            TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    payload         TEXT    NOT NULL DEFAULT '',
    status          TEXT    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL DEFAULT 0,
    claimed_until   BIGINT, -- NULL when not leased
    last_error      TEXT    NOT NULL DEFAULT '',
    created_at      BIGINT  NOT NULL DEFAULT 0,
    updated_at      BIGINT  NOT NULL DEFAULT 0
);
-- The claim finds each lane's oldest pending item (MIN(id) per lane) in this
-- index, then reads those rows by primary key.
CREATE INDEX outbox_lane_idx ON outbox (conversation_id, lane, id) WHERE status = 'pending';
CREATE INDEX outbox_session_idx ON outbox (session_id);

CREATE TABLE review_records (
    session_id   TEXT   NOT NULL PRIMARY KEY,
    started_at   BIGINT NOT NULL,
    ended_at     BIGINT NOT NULL DEFAULT 0,
    tenant_id    TEXT   NOT NULL DEFAULT '',
    reason       TEXT   NOT NULL DEFAULT '',
    intent       TEXT   NOT NULL DEFAULT '',
    close_reason TEXT   NOT NULL DEFAULT '',
    record       TEXT   NOT NULL -- the whole bridge.ReviewRecord as JSON
);
CREATE INDEX review_records_started_idx ON review_records (started_at, session_id);

-- +goose Down
DROP TABLE review_records;
DROP TABLE outbox;
DROP TABLE cursors;
DROP TABLE conversation_refs;
DROP TABLE messages;
DROP TABLE sessions;
