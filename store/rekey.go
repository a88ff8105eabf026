package store

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"gorm.io/gorm"
)

// rekeyBatch is how many sealed values Rekey reads at a time.
const rekeyBatch = 500

// Rekey re-seals every password in the journal under newKey, in one
// transaction, and makes newKey the key that seals from now on (the
// previous keys can still unseal). It returns how many values it
// re-sealed; values already under newKey are left alone, so a repeated
// Rekey is harmless. If any value cannot be unsealed nothing changes and
// the error satisfies errors.Is(err, ErrUnseal).
//
// Rekey needs the database alone: while another process has it open (the
// daemon, or a command such as rotate) it returns an error satisfying
// errors.Is(err, ErrInUse) and changes nothing, and while it runs other
// processes wait to open it. Once it returns, the old key file may be
// retired.
func (db *DB) Rekey(ctx context.Context, newKey Key) (int, error) {
	if newKey.IsZero() {
		return 0, fmt.Errorf("rekey: %w", ErrNoKey)
	}
	keys := db.keys.Load()
	if keys == nil || keys.current.IsZero() {
		return 0, fmt.Errorf("rekey: %w", ErrNoKey)
	}
	unlock, err := db.rekeyLock(ctx)
	if err != nil {
		return 0, fmt.Errorf("rekey %s: %w", db.path, err)
	}
	defer unlock()
	target := NewKeyring(newKey)
	n := 0
	err = db.gdb.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var lastID int64
		lastRole := ""
		for {
			var rows []sealedRow
			if err := tx.Raw(`SELECT * FROM sealed_passwords WHERE (rotation_id, role) > (?, ?)
				ORDER BY rotation_id, role LIMIT ?`, lastID, lastRole, rekeyBatch).Scan(&rows).Error; err != nil {
				return fmt.Errorf("read sealed passwords: %w", err)
			}
			for _, r := range rows {
				if r.KeyID == newKey.ID() {
					continue
				}
				pw, err := keys.unseal(r.RotationID, r.Role, sealed{KeyID: r.KeyID, Nonce: r.Nonce, Ciphertext: r.Ciphertext})
				if err != nil {
					return err
				}
				s, err := target.seal(r.RotationID, r.Role, pw)
				if err != nil {
					return err
				}
				if err := tx.Exec(`UPDATE sealed_passwords SET key_id = ?, nonce = ?, ciphertext = ?
					WHERE rotation_id = ? AND role = ?`, s.KeyID, s.Nonce, s.Ciphertext, r.RotationID, r.Role).Error; err != nil {
					return fmt.Errorf("update sealed password: %w", err)
				}
				n++
			}
			if len(rows) < rekeyBatch {
				return nil
			}
			lastID, lastRole = rows[len(rows)-1].RotationID, rows[len(rows)-1].Role
		}
	})
	if err != nil {
		return 0, fmt.Errorf("rekey: %w", err)
	}
	old := make([]Key, 0, len(keys.byID))
	for _, k := range keys.byID {
		old = append(old, k)
	}
	db.keys.Store(NewKeyring(newKey, old...))
	return n, nil
}

// rekeyLock takes the database alone: ErrInUse while another process has
// it open. It returns the function that gives it back.
func (db *DB) rekeyLock(ctx context.Context) (func(), error) {
	if db.dialect == dialectPostgres {
		return db.rekeyLockPostgres(ctx)
	}
	// Converting the shared lock to an exclusive one is not atomic: a
	// failed conversion may have dropped the shared lock, so take it back
	// either way.
	back := func() { _ = flockWait(context.WithoutCancel(ctx), db.use, syscall.LOCK_SH) }
	if err := syscall.Flock(int(db.use.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		back()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			err = ErrInUse
		}
		return nil, err
	}
	return back, nil
}

// CheckKey verifies that the keyring opens the newest sealed passwords in
// the database, which were sealed with the key in use most recently. It
// returns an error satisfying errors.Is(err, ErrUnseal) that names the key
// ids if not, and nil for a database with no passwords yet.
func (db *DB) CheckKey(ctx context.Context) error {
	keys := db.keys.Load()
	if keys == nil || keys.current.IsZero() {
		return fmt.Errorf("check key: %w", ErrNoKey)
	}
	var rows []sealedRow
	if err := db.gdb.WithContext(ctx).Raw(`SELECT * FROM sealed_passwords ORDER BY rotation_id DESC, role LIMIT 2`).
		Scan(&rows).Error; err != nil {
		return fmt.Errorf("check key: %w", err)
	}
	for _, r := range rows {
		if _, err := keys.unseal(r.RotationID, r.Role, sealed{KeyID: r.KeyID, Nonce: r.Nonce, Ciphertext: r.Ciphertext}); err != nil {
			return fmt.Errorf("check key: %s does not open the journal (its newest password is sealed with key %s); "+
				"use the key file the journal was written with: %w", keys.current, r.KeyID, err)
		}
	}
	return nil
}
