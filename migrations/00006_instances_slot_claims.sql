-- Several rotords may share one journal (on PostgreSQL, from several
-- machines). Each running daemon keeps a row in instances, refreshed by
-- its heartbeat, so that rotord status can list them and what they hold.
-- A secret's scheduled slot is claimed in its secrets row: of the daemons
-- whose timers fire for one slot, the one that moves next_due past it
-- rotates, the others skip it (see the store's ClaimSlot).

-- +goose Up
CREATE TABLE instances (
	id           TEXT    NOT NULL PRIMARY KEY, -- the daemon's lease holder name: host, pid and a random part
	host         TEXT    NOT NULL,
	version      TEXT    NOT NULL DEFAULT '',
	started_at   INTEGER NOT NULL,
	heartbeat_at INTEGER NOT NULL,
	in_flight    INTEGER NOT NULL DEFAULT 0 -- rotations under way
) STRICT;

ALTER TABLE secrets ADD COLUMN slot_owner TEXT;    -- the instance that claimed the current slot
ALTER TABLE secrets ADD COLUMN slot_due   INTEGER; -- that slot's due time

-- +goose Down
ALTER TABLE secrets DROP COLUMN slot_due;
ALTER TABLE secrets DROP COLUMN slot_owner;
DROP TABLE instances;
