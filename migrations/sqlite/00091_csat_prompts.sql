-- The rating card an employee gets after an agent-handled chat: one row per
-- ended session, the card's Teams activity id (so it is updated in place),
-- when it was offered and when it expires (Unix milliseconds), and its
-- state: open, answered or expired. The sweeper expires open cards by
-- expires_at. Keep identical in meaning in both dialects.

-- +goose Up
CREATE TABLE csat_prompts (
    session_id      TEXT   NOT NULL PRIMARY KEY REFERENCES sessions (id) ON DELETE CASCADE,
    conversation_id TEXT   NOT NULL,
    card_id         TEXT   NOT NULL DEFAULT '',
    prompted_at     BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    state           TEXT   NOT NULL
);
CREATE INDEX csat_prompts_open ON csat_prompts (expires_at) WHERE state = 'open';

-- +goose Down
DROP TABLE csat_prompts;
