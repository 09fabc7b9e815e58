-- Teams activities already handled, per conversation (issue 12): a replayed
-- activity is a no-op whatever happened to its session. Rows are kept until
-- expires_at (Unix ms; at least the token lifetime plus leeway) and pruned in
-- small batches by the requests that add new ones. Keep this file identical in
-- meaning to ../sqlite/00030_activity_keys.sql.

-- +goose Up
CREATE TABLE activity_keys (
    conversation_id TEXT   NOT NULL,
    activity_id     TEXT   NOT NULL,
    expires_at      BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, activity_id)
);
CREATE INDEX activity_keys_expiry_idx ON activity_keys (expires_at);

-- +goose Down
DROP TABLE activity_keys;
