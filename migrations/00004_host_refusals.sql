-- What each host refused in a rotation, so that a revert, a recovery or a
-- reconcile never sends a refused password to it again and stays within
-- the budget of refused logins (pam_faillock locks at the third).
-- refused names the candidates ('', 'old', 'new' or 'old,new'), never a
-- password; refusals counts the refused (or unanswered) logins.

-- +goose Up
ALTER TABLE rotation_hosts ADD COLUMN refused  TEXT    NOT NULL DEFAULT ''
	CHECK (refused IN ('', 'old', 'new', 'old,new'));
ALTER TABLE rotation_hosts ADD COLUMN refusals INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE rotation_hosts DROP COLUMN refusals;
ALTER TABLE rotation_hosts DROP COLUMN refused;
