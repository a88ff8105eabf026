-- Several rotords may share one journal (on PostgreSQL, from several
-- machines). Each running daemon keeps a row in instances, refreshed by
-- its heartbeat, so that rotord status can list them and what they hold.

-- +goose Up
CREATE TABLE instances (
	id           TEXT    NOT NULL PRIMARY KEY, -- the daemon's lease holder name: host, pid and a random part
	host         TEXT    NOT NULL,
	version      TEXT    NOT NULL DEFAULT '',
	started_at   INTEGER NOT NULL,
	heartbeat_at INTEGER NOT NULL,
	in_flight    INTEGER NOT NULL DEFAULT 0 -- rotations under way
) STRICT;

-- +goose Down
DROP TABLE instances;
