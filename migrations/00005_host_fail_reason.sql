-- Why each host of a rotation failed, as a code the engine decides on
-- ('rejected', 'not-started', 'refused', 'unreachable', ...; see
-- rotation.FailReason), beside last_error, which holds the words for
-- people. The engine never parses last_error.
--
-- Rows journaled before this column existed are given the code their words
-- stood for, once, here: 'rejected' and 'not-started' were the two reasons
-- that took part in a decision (a fresh password after a policy rejection).
-- Every other old row keeps '' (no code), which decides nothing.

-- +goose Up
ALTER TABLE rotation_hosts ADD COLUMN fail_reason TEXT NOT NULL DEFAULT '';
UPDATE rotation_hosts SET fail_reason = 'rejected'
	WHERE state = 'failed' AND substr(last_error, 1, 20) = 'rejected by policy: ';
UPDATE rotation_hosts SET fail_reason = 'not-started'
	WHERE state = 'failed' AND substr(last_error, 1, 13) = 'not started: ';

-- +goose Down
ALTER TABLE rotation_hosts DROP COLUMN fail_reason;
