-- The review inbox (PostgreSQL): filter columns on review records, the bot
-- team's annotations and their audit log. Keep identical in meaning to
-- ../sqlite/00060_review_inbox.sql.

-- +goose Up
ALTER TABLE review_records ADD COLUMN confidence DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE review_records ADD COLUMN topic      TEXT             NOT NULL DEFAULT '';
ALTER TABLE review_records ADD COLUMN csat       INTEGER          NOT NULL DEFAULT 0; -- 0: not rated, else 1 to 5
UPDATE review_records SET
    confidence = COALESCE((record::jsonb ->> 'confidence')::double precision, 0),
    topic      = COALESCE(record::jsonb -> 'verdict' ->> 'topic', ''),
    csat       = COALESCE((record::jsonb -> 'csat' ->> 'rating')::integer, 0);
CREATE INDEX review_records_intent_idx ON review_records (intent, started_at);

-- One row per reviewed handoff: the reviewer's verdict on the bot part.
CREATE TABLE review_annotations (
    session_id      TEXT    NOT NULL PRIMARY KEY,
    reviewed        BOOLEAN NOT NULL DEFAULT FALSE,
    intents         TEXT    NOT NULL DEFAULT '{}', -- JSON object: bot-turn index → correct intent
    expected_action TEXT    NOT NULL DEFAULT '',
    note            TEXT    NOT NULL DEFAULT '',
    updated_by      TEXT    NOT NULL DEFAULT '',
    updated_at      BIGINT  NOT NULL DEFAULT 0
);

-- Who changed which annotation, when, and to what.
CREATE TABLE review_audit (
    id         BIGSERIAL PRIMARY KEY,
    session_id TEXT      NOT NULL,
    actor      TEXT      NOT NULL,
    action     TEXT      NOT NULL,
    detail     TEXT      NOT NULL DEFAULT '',
    at         BIGINT    NOT NULL
);
CREATE INDEX review_audit_session_idx ON review_audit (session_id, id);

-- +goose Down
DROP TABLE review_audit;
DROP TABLE review_annotations;
DROP INDEX review_records_intent_idx;
ALTER TABLE review_records DROP COLUMN csat;
ALTER TABLE review_records DROP COLUMN topic;
ALTER TABLE review_records DROP COLUMN confidence;
