package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/rotord/rotord/rotation"
)

// Acquire takes the lease on secretName for holder until ttl from now. It
// succeeds if the lease is free, expired, or already holder's (then it is
// extended), and returns a *rotation.LeaseHeldError naming the other holder
// otherwise. The decision is one statement under SQLite's write lock, so of
// several processes racing for a lease exactly one wins.
//
// Expiry compares the clocks of the processes sharing the database; keep
// them in sync and the TTL well above their skew.
func (db *DB) Acquire(ctx context.Context, secretName, holder string, ttl time.Duration) error {
	if err := checkLeaseArgs(secretName, holder, ttl); err != nil {
		return fmt.Errorf("acquire lease on %q: %w", secretName, err)
	}
	now := db.now()
	var held *rotation.LeaseHeldError
	err := db.gdb.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		res := tx.Exec(`INSERT INTO leases (secret, holder, acquired_at, expires_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (secret) DO UPDATE SET
				holder = excluded.holder,
				acquired_at = CASE WHEN leases.holder = excluded.holder THEN leases.acquired_at ELSE excluded.acquired_at END,
				expires_at = excluded.expires_at
			WHERE leases.holder = excluded.holder OR leases.expires_at <= ?`,
			secretName, holder, now.UnixNano(), now.Add(ttl).UnixNano(), now.UnixNano())
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 1 {
			return nil
		}
		var err error
		held, err = currentHolder(tx, secretName)
		return err
	})
	if err != nil {
		return fmt.Errorf("acquire lease on %q: %w", secretName, err)
	}
	if held != nil {
		return held
	}
	return nil
}

// Renew extends holder's lease on secretName until ttl from now. A lease
// that expired but was not taken by another holder is still the holder's.
// It returns a *rotation.LeaseHeldError if the holder lost the lease (to
// another holder, or it was released: then Holder is empty).
func (db *DB) Renew(ctx context.Context, secretName, holder string, ttl time.Duration) error {
	if err := checkLeaseArgs(secretName, holder, ttl); err != nil {
		return fmt.Errorf("renew lease on %q: %w", secretName, err)
	}
	var held *rotation.LeaseHeldError
	err := db.gdb.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		res := tx.Exec(`UPDATE leases SET expires_at = ? WHERE secret = ? AND holder = ?`,
			db.now().Add(ttl).UnixNano(), secretName, holder)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 1 {
			return nil
		}
		var err error
		held, err = currentHolder(tx, secretName)
		if held == nil && err == nil {
			held = &rotation.LeaseHeldError{Secret: secretName}
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("renew lease on %q: %w", secretName, err)
	}
	if held != nil {
		return held
	}
	return nil
}

// Release gives up holder's lease on secretName. Releasing a lease that
// holder does not have is no error and leaves it alone.
func (db *DB) Release(ctx context.Context, secretName, holder string) error {
	if err := db.gdb.WithContext(ctx).Exec(`DELETE FROM leases WHERE secret = ? AND holder = ?`,
		secretName, holder).Error; err != nil {
		return fmt.Errorf("release lease on %q: %w", secretName, err)
	}
	return nil
}

func checkLeaseArgs(secretName, holder string, ttl time.Duration) error {
	switch {
	case secretName == "":
		return errors.New("empty secret name")
	case holder == "":
		return errors.New("empty holder")
	case ttl <= 0:
		return fmt.Errorf("lease ttl %s is not positive", ttl)
	}
	return nil
}

// currentHolder returns who holds the lease on secretName; nil if nobody.
func currentHolder(tx *gorm.DB, secretName string) (*rotation.LeaseHeldError, error) {
	var row struct {
		Holder    string
		ExpiresAt int64
	}
	res := tx.Raw(`SELECT holder, expires_at FROM leases WHERE secret = ?`, secretName).Scan(&row)
	if res.Error != nil {
		return nil, fmt.Errorf("read lease: %w", res.Error)
	}
	if res.RowsAffected == 0 {
		return nil, nil
	}
	return &rotation.LeaseHeldError{Secret: secretName, Holder: row.Holder, Expires: fromNS(row.ExpiresAt)}, nil
}
