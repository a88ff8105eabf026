-- PostgreSQL's form of 00003_lease_fencing_secret_keys.sql: the columns
-- only. The SQLite form also merges the spellings of secret names that
-- journals of older rotords kept apart; a PostgreSQL journal never held
-- any (rotord keys every secret by rotation.SecretKey, in Go, since before
-- it spoke PostgreSQL), so there is nothing to merge, and no SQL function
-- has to match Go's lower-casing.

-- +goose Up
ALTER TABLE leases ADD COLUMN generation BIGINT NOT NULL DEFAULT 1;
ALTER TABLE rotations ADD COLUMN lease_gen BIGINT NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE rotations DROP COLUMN lease_gen;
ALTER TABLE leases DROP COLUMN generation;
