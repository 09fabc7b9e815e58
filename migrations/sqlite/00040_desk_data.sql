-- The desk's own data for its chat (bridge.DeskChat.Data: for the Virtual
-- Agent desk the callback nonce and the employee's e-mail, as JSON) and the
-- count of the bridge's messages the desk confirmed in the chat
-- (bridge.DeskMessage.Confirmed). The per-session nonce column is no longer
-- written; the nonces of sessions open at upgrade move into desk_data in the
-- Virtual Agent desk's format, so their callbacks keep being accepted.

-- +goose Up
ALTER TABLE sessions ADD COLUMN desk_data TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN desk_posts INTEGER NOT NULL DEFAULT 0;
UPDATE sessions SET desk_data = '{"nonce":"' || nonce || '"}' WHERE nonce <> '' AND state <> 'closed';

-- +goose Down
ALTER TABLE sessions DROP COLUMN desk_posts;
ALTER TABLE sessions DROP COLUMN desk_data;
