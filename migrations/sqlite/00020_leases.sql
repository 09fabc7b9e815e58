-- Job leases: which replica runs the once-per-deployment jobs (poller,
-- timeout sweeper, weekly review export and retention). expires_at is Unix
-- milliseconds by the database's clock; term counts changes of holder (a
-- fencing number for logs and tests). Keep identical in meaning in both
-- dialects.

-- +goose Up
CREATE TABLE leases (
    name        TEXT   NOT NULL PRIMARY KEY,
    holder      TEXT   NOT NULL,
    expires_at  BIGINT NOT NULL,
    term        BIGINT NOT NULL DEFAULT 1
);

-- +goose Down
DROP TABLE leases;
