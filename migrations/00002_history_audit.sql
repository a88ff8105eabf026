-- Per-secret history and last-committed lookups stay index-only at millions
-- of rotations; the audit trail records who asked for what (never a secret).

-- +goose Up
CREATE INDEX rotations_secret_id ON rotations (secret, id DESC);

CREATE TABLE audit_events (
	id          INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	at          INTEGER NOT NULL,
	secret      TEXT    NOT NULL DEFAULT '',
	rotation_id INTEGER, -- NULL when the event concerns no rotation
	actor       TEXT    NOT NULL,
	action      TEXT    NOT NULL,
	detail      TEXT    NOT NULL DEFAULT ''
) STRICT;

CREATE INDEX audit_events_secret_id ON audit_events (secret, id DESC);

-- +goose Down
DROP TABLE audit_events;
DROP INDEX rotations_secret_id;
