package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rotord/rotord/rotation"
)

// NextDue returns when the secret's next scheduled rotation is due; ok is
// false if none was recorded. Like every per-secret method of the store, it
// keys the secret by rotation.SecretKey(secretName).
func (db *DB) NextDue(ctx context.Context, secretName string) (time.Time, bool, error) {
	v, ok, err := db.secretColumn(ctx, "next_due", secretName)
	if err != nil || !ok {
		return time.Time{}, false, err
	}
	return fromNS(v), true, nil
}

// SetNextDue records when the secret's next scheduled rotation is due.
func (db *DB) SetNextDue(ctx context.Context, secretName string, t time.Time) error {
	if secretName == "" {
		return errors.New("set next due time: empty secret name")
	}
	if err := db.retry(ctx, func() error {
		return db.gdb.WithContext(ctx).Exec(`INSERT INTO secrets (name, next_due) VALUES (?, ?)
		ON CONFLICT (name) DO UPDATE SET next_due = excluded.next_due`, rotation.SecretKey(secretName), t.UnixNano()).Error
	}); err != nil {
		return fmt.Errorf("set next due time of %q: %w", secretName, err)
	}
	return nil
}

// SecretID returns the cached vault id of a secret name; ok is false if
// none is cached.
func (db *DB) SecretID(ctx context.Context, secretName string) (int, bool, error) {
	v, ok, err := db.secretColumn(ctx, "vault_id", secretName)
	return int(v), ok, err
}

// SetSecretID caches the vault id of a secret name.
func (db *DB) SetSecretID(ctx context.Context, secretName string, id int) error {
	if secretName == "" {
		return errors.New("set secret id: empty secret name")
	}
	if err := db.retry(ctx, func() error {
		return db.gdb.WithContext(ctx).Exec(`INSERT INTO secrets (name, vault_id) VALUES (?, ?)
		ON CONFLICT (name) DO UPDATE SET vault_id = excluded.vault_id`, rotation.SecretKey(secretName), id).Error
	}); err != nil {
		return fmt.Errorf("set secret id of %q: %w", secretName, err)
	}
	return nil
}

// secretColumn reads one nullable INTEGER column of the secrets table.
// column is one of the constant names above, never user input.
func (db *DB) secretColumn(ctx context.Context, column, secretName string) (int64, bool, error) {
	var v *int64
	err := db.retry(ctx, func() error {
		v = nil
		return db.gdb.WithContext(ctx).Raw(`SELECT `+column+` FROM secrets WHERE name = ?`, rotation.SecretKey(secretName)).Scan(&v).Error
	})
	if err != nil {
		return 0, false, fmt.Errorf("read %s of %q: %w", column, secretName, err)
	}
	if v == nil {
		return 0, false, nil
	}
	return *v, true, nil
}
