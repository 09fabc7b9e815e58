-- The weekly review digest posted to a Teams channel: one row per ISO week,
-- so the digest is posted once per deployment however many replicas run.
-- A replica posts only while holder is its own and claimed_until (Unix
-- milliseconds by the database's clock) has not passed; sent_at (Unix ms)
-- and post_id record the post. Keep identical in meaning in both dialects.

-- +goose Up
CREATE TABLE review_digests (
    week          TEXT   NOT NULL PRIMARY KEY,
    holder        TEXT   NOT NULL,
    claimed_until BIGINT NOT NULL,
    sent_at       BIGINT,
    post_id       TEXT   NOT NULL DEFAULT ''
);

-- +goose Down
DROP TABLE review_digests;
