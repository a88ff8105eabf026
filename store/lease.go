package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/rotord/rotord/rotation"
)

// Acquire takes the lease on secretName for holder until ttl from now and
// returns the lease's fencing generation. It succeeds if the lease is
// free, expired, or already holder's (then it is extended and keeps its
// generation), and returns a *rotation.LeaseHeldError naming the other
// holder otherwise. A holder that did not have the lease gets the next
// generation. The decision is one statement under SQLite's write lock, so
// of several processes racing for a lease exactly one wins. Leases are
// keyed by rotation.SecretKey(secretName).
//
// Expiry compares the clocks of the processes sharing the database; keep
// them in sync and the TTL well above their skew.
func (db *DB) Acquire(ctx context.Context, secretName, holder string, ttl time.Duration) (int64, error) {
	if err := checkLeaseArgs(secretName, holder, ttl); err != nil {
		return 0, fmt.Errorf("acquire lease on %q: %w", secretName, err)
	}
	key := rotation.SecretKey(secretName)
	now := db.now()
	var held *rotation.LeaseHeldError
	var gen int64
	err := db.transact(ctx, func(tx *gorm.DB) error {
		held = nil
		res := tx.Exec(`INSERT INTO leases (secret, holder, acquired_at, expires_at, generation) VALUES (?, ?, ?, ?, 1)
			ON CONFLICT (secret) DO UPDATE SET
				holder = excluded.holder,
				acquired_at = CASE WHEN leases.holder = excluded.holder THEN leases.acquired_at ELSE excluded.acquired_at END,
				generation = CASE WHEN leases.holder = excluded.holder THEN leases.generation ELSE leases.generation + 1 END,
				expires_at = excluded.expires_at
			WHERE leases.holder = excluded.holder OR leases.expires_at <= ?`,
			key, holder, now.UnixNano(), now.Add(ttl).UnixNano(), now.UnixNano())
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 1 {
			var err error
			gen, err = leaseGeneration(tx, key)
			return err
		}
		var err error
		held, err = currentHolder(tx, secretName, key)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("acquire lease on %q: %w", secretName, err)
	}
	if held != nil {
		return 0, held
	}
	return gen, nil
}

// Renew extends holder's lease on secretName until ttl from now. A lease
// that expired but was not taken by another holder is still the holder's.
// It returns a *rotation.LeaseHeldError if the holder lost the lease (to
// another holder, or it was released: then Holder is empty).
func (db *DB) Renew(ctx context.Context, secretName, holder string, ttl time.Duration) error {
	if err := checkLeaseArgs(secretName, holder, ttl); err != nil {
		return fmt.Errorf("renew lease on %q: %w", secretName, err)
	}
	key := rotation.SecretKey(secretName)
	var held *rotation.LeaseHeldError
	err := db.transact(ctx, func(tx *gorm.DB) error {
		held = nil
		res := tx.Exec(`UPDATE leases SET expires_at = ? WHERE secret = ? AND holder = ?`,
			db.now().Add(ttl).UnixNano(), key, holder)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 1 {
			return nil
		}
		var err error
		held, err = currentHolder(tx, secretName, key)
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
// holder does not have is no error and leaves it alone. The lease's row
// stays, without holder, so that its generation keeps growing.
func (db *DB) Release(ctx context.Context, secretName, holder string) error {
	if err := db.retry(ctx, func() error {
		return db.gdb.WithContext(ctx).Exec(`UPDATE leases SET holder = '', expires_at = 0 WHERE secret = ? AND holder = ?`,
			rotation.SecretKey(secretName), holder).Error
	}); err != nil {
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

// currentHolder returns who holds the lease with the given key; nil if
// nobody ever did.
func currentHolder(tx *gorm.DB, secretName, key string) (*rotation.LeaseHeldError, error) {
	var row struct {
		Holder    string
		ExpiresAt int64
	}
	res := tx.Raw(`SELECT holder, expires_at FROM leases WHERE secret = ?`, key).Scan(&row)
	if res.Error != nil {
		return nil, fmt.Errorf("read lease: %w", res.Error)
	}
	if res.RowsAffected == 0 {
		return nil, nil
	}
	return &rotation.LeaseHeldError{Secret: secretName, Holder: row.Holder, Expires: fromNS(row.ExpiresAt)}, nil
}

// leaseGeneration returns the generation of the lease with the given key;
// 0 if there never was one.
func leaseGeneration(tx *gorm.DB, key string) (int64, error) {
	var gen int64
	if err := tx.Raw(`SELECT generation FROM leases WHERE secret = ?`+forUpdate(tx), key).Scan(&gen).Error; err != nil {
		return 0, fmt.Errorf("read lease generation: %w", err)
	}
	return gen, nil
}

// checkFence returns an error satisfying errors.Is(err, rotation.ErrFenced)
// unless a writer of lease generation gen may write a rotation of the
// secret with the given key that belongs to generation owner: gen must be
// owner and, for a fenced rotation (owner > 0), still the generation of
// the secret's lease. Call it inside the write's transaction.
func checkFence(tx *gorm.DB, key string, owner, gen int64) error {
	if gen != owner {
		return fmt.Errorf("the rotation belongs to lease generation %d, not %d: %w", owner, gen, rotation.ErrFenced)
	}
	if owner == 0 {
		return nil
	}
	cur, err := leaseGeneration(tx, key)
	if err != nil {
		return err
	}
	if cur != gen {
		return fmt.Errorf("the lease on %q is at generation %d, not %d: %w", key, cur, gen, rotation.ErrFenced)
	}
	return nil
}
