-- PostgreSQL's form of 00006_instances_slot_claims.sql.

-- +goose Up
CREATE TABLE instances (
	id           TEXT    NOT NULL PRIMARY KEY,
	host         TEXT    NOT NULL,
	version      TEXT    NOT NULL DEFAULT '',
	started_at   BIGINT  NOT NULL,
	heartbeat_at BIGINT  NOT NULL,
	in_flight    INTEGER NOT NULL DEFAULT 0
);

ALTER TABLE secrets ADD COLUMN slot_owner TEXT;
ALTER TABLE secrets ADD COLUMN slot_due   BIGINT;

-- +goose Down
ALTER TABLE secrets DROP COLUMN slot_due;
ALTER TABLE secrets DROP COLUMN slot_owner;
DROP TABLE instances;
