-- The rotation journal: secrets, rotations with their hosts and sealed
-- passwords, and leases. Times are INTEGER nanoseconds since the Unix epoch,
-- UTC. No column ever holds a password in plain text: sealed_passwords holds
-- AES-256-GCM ciphertexts only.

-- +goose Up
CREATE TABLE secrets (
	name             TEXT    NOT NULL PRIMARY KEY,
	vault_id         INTEGER,          -- cached Secret Server id; NULL until resolved
	next_due         INTEGER,          -- next scheduled rotation; NULL if none recorded
	last_rotation_id INTEGER,          -- newest committed rotation
	last_rotated_at  INTEGER
) STRICT;

CREATE TABLE rotations (
	id          INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, -- never reused: sealed values are bound to it
	secret      TEXT    NOT NULL REFERENCES secrets (name),
	secret_id   INTEGER NOT NULL DEFAULT 0,
	username    TEXT    NOT NULL DEFAULT '',
	kind        TEXT    NOT NULL CHECK (kind IN ('rotate', 'rollback', 'reconcile')),
	state       TEXT    NOT NULL CHECK (state IN ('pending', 'hosts-changing', 'committing', 'committed',
	                                              'rolling-back', 'rolled-back', 'needs-reconcile')),
	error       TEXT    NOT NULL DEFAULT '',
	rollback_of INTEGER REFERENCES rotations (id),
	started_at  INTEGER NOT NULL,
	updated_at  INTEGER NOT NULL
) STRICT;

-- Recovery reads the rotations that are not finished.
CREATE INDEX rotations_open ON rotations (id)
	WHERE state IN ('pending', 'hosts-changing', 'committing', 'rolling-back');
CREATE INDEX rotations_needs_reconcile ON rotations (id) WHERE state = 'needs-reconcile';

CREATE TABLE rotation_hosts (
	rotation_id INTEGER NOT NULL REFERENCES rotations (id) ON DELETE CASCADE,
	host        TEXT    NOT NULL, -- "name", "name:port" or "[v6]:port"
	position    INTEGER NOT NULL, -- order of the host in the secret
	name        TEXT    NOT NULL,
	port        INTEGER NOT NULL DEFAULT 0,
	state       TEXT    NOT NULL CHECK (state IN ('pending', 'changing', 'changed', 'reverting',
	                                              'reverted', 'failed', 'needs-reconcile')),
	attempts    INTEGER NOT NULL DEFAULT 0,
	last_error  TEXT    NOT NULL DEFAULT '',
	updated_at  INTEGER NOT NULL,
	PRIMARY KEY (rotation_id, host)
) STRICT, WITHOUT ROWID;

CREATE TABLE sealed_passwords (
	rotation_id INTEGER NOT NULL REFERENCES rotations (id) ON DELETE CASCADE,
	role        TEXT    NOT NULL CHECK (role IN ('old', 'new')),
	key_id      TEXT    NOT NULL, -- which key sealed it (hex of a hash prefix; reveals nothing)
	nonce       BLOB    NOT NULL,
	ciphertext  BLOB    NOT NULL,
	PRIMARY KEY (rotation_id, role)
) STRICT, WITHOUT ROWID;

CREATE TABLE leases (
	secret      TEXT    NOT NULL PRIMARY KEY,
	holder      TEXT    NOT NULL,
	acquired_at INTEGER NOT NULL,
	expires_at  INTEGER NOT NULL
) STRICT;

-- +goose Down
DROP TABLE leases;
DROP TABLE sealed_passwords;
DROP TABLE rotation_hosts;
DROP TABLE rotations;
DROP TABLE secrets;
