-- The key a rekey made the journal's sealing key, so that a process still
-- sealing with the key before it notices and stops (on PostgreSQL a
-- server restart drops the advisory locks that otherwise keep a rekey
-- from running beside it). One row at most, written by rekey.

-- +goose Up
CREATE TABLE sealing_key (
	id     INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
	key_id TEXT    NOT NULL
) STRICT;

-- +goose Down
DROP TABLE sealing_key;
