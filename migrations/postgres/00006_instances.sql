-- PostgreSQL's form of 00006_instances.sql.

-- +goose Up
CREATE TABLE instances (
	id           TEXT    NOT NULL PRIMARY KEY,
	host         TEXT    NOT NULL,
	version      TEXT    NOT NULL DEFAULT '',
	started_at   BIGINT  NOT NULL,
	heartbeat_at BIGINT  NOT NULL,
	in_flight    INTEGER NOT NULL DEFAULT 0
);

-- +goose Down
DROP TABLE instances;
