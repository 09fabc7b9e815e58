-- The employee's Teams experience (issue 14): the live status card's activity
-- id per session, the e-mail looked up in Teams' member list and the time of
-- the welcome per conversation, and attachments passed on as links.

-- +goose Up
ALTER TABLE sessions ADD COLUMN status_card_id TEXT NOT NULL DEFAULT '';
ALTER TABLE conversation_refs ADD COLUMN user_email TEXT NOT NULL DEFAULT '';
ALTER TABLE conversation_refs ADD COLUMN welcomed_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN attachments TEXT; -- JSON array of {name, content_type, url, size}; NULL when none

-- +goose Down
ALTER TABLE messages DROP COLUMN attachments;
ALTER TABLE conversation_refs DROP COLUMN welcomed_at;
ALTER TABLE conversation_refs DROP COLUMN user_email;
ALTER TABLE sessions DROP COLUMN status_card_id;
