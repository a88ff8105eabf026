-- Leases carry a fencing generation and rotations the generation that owns
-- them, so that a holder that lost its lease can write no more of a
-- rotation. Everything kept per secret (leases, due times, cached ids,
-- rotations, audit events) is keyed by the secret's canonical identity,
-- rotord_secret_key(name) (rotation.SecretKey, registered by the store on
-- every connection): names that differ only in case are one secret.

-- +goose Up
ALTER TABLE leases ADD COLUMN generation INTEGER NOT NULL DEFAULT 1; -- grows when a new holder takes the lease
ALTER TABLE rotations ADD COLUMN lease_gen INTEGER NOT NULL DEFAULT 0; -- 0: begun without a lease (not fenced)

-- Secrets: one row per key, merging the spellings. The earliest due time
-- wins (a slot is never skipped; the daemon's history check keeps a
-- rotation from being made twice).
INSERT INTO secrets (name) SELECT DISTINCT rotord_secret_key(name) FROM secrets WHERE true
	ON CONFLICT (name) DO NOTHING;
UPDATE secrets SET
	vault_id = coalesce(secrets.vault_id, m.vault_id),
	next_due = m.next_due,
	last_rotation_id = m.last_rotation_id,
	last_rotated_at = m.last_rotated_at
FROM (SELECT rotord_secret_key(name) AS key, max(vault_id) AS vault_id, min(next_due) AS next_due,
		max(last_rotation_id) AS last_rotation_id, max(last_rotated_at) AS last_rotated_at
	FROM secrets GROUP BY rotord_secret_key(name)) AS m
WHERE secrets.name = m.key;
UPDATE rotations SET secret = rotord_secret_key(secret) WHERE secret <> rotord_secret_key(secret);
UPDATE audit_events SET secret = rotord_secret_key(secret) WHERE secret <> rotord_secret_key(secret);
DELETE FROM secrets WHERE name <> rotord_secret_key(name);

-- Leases: of several spellings, the one that expires last stands.
DELETE FROM leases WHERE EXISTS (SELECT 1 FROM leases o
	WHERE rotord_secret_key(o.secret) = rotord_secret_key(leases.secret) AND o.secret <> leases.secret
	AND (o.expires_at > leases.expires_at OR (o.expires_at = leases.expires_at AND o.secret < leases.secret)));
UPDATE leases SET secret = rotord_secret_key(secret) WHERE secret <> rotord_secret_key(secret);

-- +goose Down
ALTER TABLE rotations DROP COLUMN lease_gen;
ALTER TABLE leases DROP COLUMN generation;
