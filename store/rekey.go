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
//
// It records newKey as the journal's sealing key in the same transaction,
// and every write that seals checks that record (sealGuard), so a process
// that kept running with the old key fails its next Begin with ErrRekeyed
// instead of sealing with a retired key. On PostgreSQL that is what holds
// across a server restart: the restart drops every store's advisory use
// lock with its session, after which a rekey can run beside daemons that
// reconnect. There Rekey takes the use lock exclusively for its own
// transaction only (on the session of its own shared lock), so the lock and
// the rewrite cannot come apart: a restart mid-rekey aborts both.
func (db *DB) Rekey(ctx context.Context, newKey Key) (int, error) {
	if newKey.IsZero() {
		return 0, fmt.Errorf("rekey: %w", ErrNoKey)
	}
	keys := db.keys.Load()
	if keys == nil || keys.current.IsZero() {
		return 0, fmt.Errorf("rekey: %w", ErrNoKey)
	}
	target := NewKeyring(newKey)
	n := 0
	err := db.rekeyTransaction(ctx, func(tx *gorm.DB) error {
		n = 0
		if err := tx.Exec(`INSERT INTO sealing_key (id, key_id) VALUES (1, ?)
			ON CONFLICT (id) DO UPDATE SET key_id = excluded.key_id`, newKey.ID()).Error; err != nil {
			return fmt.Errorf("record sealing key: %w", err)
		}
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
	if errors.Is(err, ErrInUse) {
		return 0, fmt.Errorf("rekey %s: %w", db.path, err)
	}
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

// rekeyTransaction runs fn in one transaction that has the database alone:
// ErrInUse, before fn runs, while another process has it open.
func (db *DB) rekeyTransaction(ctx context.Context, fn func(tx *gorm.DB) error) error {
	if db.dialect == dialectPostgres {
		return db.rekeyTransactionPostgres(ctx, fn)
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
		return err
	}
	defer back()
	return db.gdb.WithContext(ctx).Transaction(fn)
}

// ErrRekeyed is returned by the writes that seal a password (Begin,
// SetNew) when the journal was rekeyed to a key this process does not
// have: it must be restarted with the new key file. Nothing is written.
var ErrRekeyed = errors.New("the journal was rekeyed to a key this process does not have; restart it with the new key file")

// sealGuard is the first statement of a transaction that seals passwords
// with keys: on PostgreSQL it takes the use lock shared for the
// transaction, so that a rekey (which holds it exclusively for its own
// transaction) is either done or refused; then it checks that the sealing
// key a rekey recorded, if any, is one of keys (ErrRekeyed if not).
func sealGuard(tx *gorm.DB, keys *Keyring) error {
	if tx.Dialector.Name() == dialectPostgres {
		if err := tx.Exec(`SELECT pg_advisory_xact_lock_shared(?)`, useLockKey).Error; err != nil {
			return fmt.Errorf("use lock: %w", err)
		}
	}
	var ids []string
	if err := tx.Raw(`SELECT key_id FROM sealing_key WHERE id = 1`).Scan(&ids).Error; err != nil {
		return fmt.Errorf("read sealing key: %w", err)
	}
	if len(ids) == 1 {
		if _, ok := keys.byID[ids[0]]; !ok {
			return fmt.Errorf("%w (the journal seals with key %s; this process has %s)", ErrRekeyed, ids[0], keys.current)
		}
	}
	return nil
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
