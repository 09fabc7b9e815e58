-- +goose Up
-- Fencing: every claim writes a fresh token and the claiming process's owner
-- id; completing, retrying, failing or extending an item names the token, so
-- a worker whose lease ran out can no longer record an outcome. failing_since
-- is when the item's current run of non-throttle failures began (0: none),
-- for the failure budget.
ALTER TABLE outbox ADD COLUMN claim_token TEXT NOT NULL DEFAULT '';
ALTER TABLE outbox ADD COLUMN claim_owner TEXT NOT NULL DEFAULT '';
ALTER TABLE outbox ADD COLUMN failing_since BIGINT NOT NULL DEFAULT 0;
CREATE INDEX outbox_claim_owner_idx ON outbox (claim_owner) WHERE status = 'pending' AND claimed_until IS NOT NULL;

-- A destination (a lane kind: user, desk, bot) that asked us to wait: no item
-- of that lane kind is claimed, and the desk is not polled, before until_at.
-- Shared by every worker and replica.
CREATE TABLE outbox_throttles (
    lane       TEXT   NOT NULL PRIMARY KEY,
    until_at   BIGINT NOT NULL,
    updated_at BIGINT NOT NULL DEFAULT 0
);

-- +goose Down
DROP TABLE outbox_throttles;
DROP INDEX outbox_claim_owner_idx;
ALTER TABLE outbox DROP COLUMN failing_since;
ALTER TABLE outbox DROP COLUMN claim_owner;
ALTER TABLE outbox DROP COLUMN claim_token;
