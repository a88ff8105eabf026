package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/rotord/rotord/rotation"
)

// Instance is one running rotord daemon sharing the journal, as its last
// heartbeat recorded it.
type Instance struct {
	ID        string // its lease holder name: host, pid and a random part
	Host      string
	Version   string
	Started   time.Time
	Heartbeat time.Time // last recorded
	InFlight  int       // rotations under way at the last heartbeat
}

// Heartbeat records that instance in is alive now, with its rotations in
// flight; the first call registers it.
func (db *DB) Heartbeat(ctx context.Context, in Instance) error {
	if in.ID == "" {
		return errors.New("record instance heartbeat: empty id")
	}
	now := db.nowNS()
	err := db.retry(ctx, func() error {
		return db.gdb.WithContext(ctx).Exec(`INSERT INTO instances (id, host, version, started_at, heartbeat_at, in_flight)
			VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, in_flight = excluded.in_flight,
				version = excluded.version`,
			in.ID, in.Host, in.Version, in.Started.UnixNano(), now, in.InFlight).Error
	})
	if err != nil {
		return fmt.Errorf("record instance heartbeat: %w", err)
	}
	return nil
}

// Deregister removes instance id: it stopped cleanly.
func (db *DB) Deregister(ctx context.Context, id string) error {
	if err := db.retry(ctx, func() error {
		return db.gdb.WithContext(ctx).Exec(`DELETE FROM instances WHERE id = ?`, id).Error
	}); err != nil {
		return fmt.Errorf("deregister instance: %w", err)
	}
	return nil
}

// Instances lists the registered instances, the most recent heartbeat
// first. An instance killed without stopping stays listed with its last
// heartbeat; ForgetInstances drops old ones.
func (db *DB) Instances(ctx context.Context) ([]Instance, error) {
	var rows []struct {
		ID          string
		Host        string
		Version     string
		StartedAt   int64
		HeartbeatAt int64
		InFlight    int
	}
	if err := db.retry(ctx, func() error {
		rows = nil
		return db.gdb.WithContext(ctx).Raw(`SELECT id, host, version, started_at, heartbeat_at, in_flight
			FROM instances ORDER BY heartbeat_at DESC, id`).Scan(&rows).Error
	}); err != nil {
		return nil, fmt.Errorf("list instances: %w", err)
	}
	out := make([]Instance, len(rows))
	for i, r := range rows {
		out[i] = Instance{ID: r.ID, Host: r.Host, Version: r.Version, Started: fromNS(r.StartedAt),
			Heartbeat: fromNS(r.HeartbeatAt), InFlight: r.InFlight}
	}
	return out, nil
}

// ForgetInstances removes the instances whose last heartbeat is older
// than before and returns how many.
func (db *DB) ForgetInstances(ctx context.Context, before time.Time) (int, error) {
	var n int64
	if err := db.retry(ctx, func() error {
		res := db.gdb.WithContext(ctx).Exec(`DELETE FROM instances WHERE heartbeat_at < ?`, before.UnixNano())
		n = res.RowsAffected
		return res.Error
	}); err != nil {
		return 0, fmt.Errorf("forget instances: %w", err)
	}
	return int(n), nil
}

// Lease is a held lease, for listings.
type Lease struct {
	Secret     string // the secret's key (rotation.SecretKey)
	Holder     string
	Acquired   time.Time
	Expires    time.Time
	Generation int64
}

// HeldLeases lists the leases that have a holder, expired ones included
// (until another holder takes them), by secret.
func (db *DB) HeldLeases(ctx context.Context) ([]Lease, error) {
	var rows []struct {
		Secret     string
		Holder     string
		AcquiredAt int64
		ExpiresAt  int64
		Generation int64
	}
	if err := db.retry(ctx, func() error {
		rows = nil
		return db.gdb.WithContext(ctx).Raw(`SELECT secret, holder, acquired_at, expires_at, generation
			FROM leases WHERE holder <> '' ORDER BY secret`).Scan(&rows).Error
	}); err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	out := make([]Lease, len(rows))
	for i, r := range rows {
		out[i] = Lease{Secret: r.Secret, Holder: r.Holder, Acquired: fromNS(r.AcquiredAt), Expires: fromNS(r.ExpiresAt), Generation: r.Generation}
	}
	return out, nil
}

// ClaimSlot claims the secret's current scheduled slot for instance, so
// that of several daemons sharing the journal exactly one rotates it. The
// slot is the secret's recorded next due time: a daemon whose timer fires
// at now claims it when it is due (at or before now) by moving it to next
// (the schedule's next slot) in one transaction that locks the secret's
// row, and gets ok with the claimed slot's due time. A slot already
// claimed — next due is after now — is the claimer's: it gets ok (and the
// slot) again, for its retries, and every other instance gets !ok. A
// secret with no due time recorded is claimed with slot now.
//
// A claimer retrying its slot must check that it was not served meanwhile
// (rotation.RotatedSince with the slot's due time).
func (db *DB) ClaimSlot(ctx context.Context, secretName, instance string, now, next time.Time) (slot time.Time, ok bool, err error) {
	if secretName == "" || instance == "" {
		return time.Time{}, false, errors.New("claim slot: empty secret name or instance")
	}
	if !next.After(now) {
		return time.Time{}, false, fmt.Errorf("claim slot of %q: next due %s not after now %s", secretName, next, now)
	}
	key := rotation.SecretKey(secretName)
	err = db.transact(ctx, func(tx *gorm.DB) error {
		ok = false
		var row struct {
			NextDue   *int64
			SlotOwner *string
			SlotDue   *int64
		}
		res := tx.Raw(`SELECT next_due, slot_owner, slot_due FROM secrets WHERE name = ?`+forUpdate(tx), key).Scan(&row)
		if res.Error != nil {
			return res.Error
		}
		switch {
		case res.RowsAffected == 0 || row.NextDue == nil || *row.NextDue <= now.UnixNano():
			due := now.UnixNano()
			if row.NextDue != nil {
				due = *row.NextDue
			}
			slot, ok = fromNS(due), true
			return tx.Exec(`INSERT INTO secrets (name, next_due, slot_owner, slot_due) VALUES (?, ?, ?, ?)
				ON CONFLICT (name) DO UPDATE SET next_due = excluded.next_due, slot_owner = excluded.slot_owner,
					slot_due = excluded.slot_due`, key, next.UnixNano(), instance, due).Error
		case row.SlotOwner != nil && *row.SlotOwner == instance && row.SlotDue != nil:
			slot, ok = fromNS(*row.SlotDue), true
		}
		return nil
	})
	if err != nil {
		return time.Time{}, false, fmt.Errorf("claim slot of %q: %w", secretName, err)
	}
	return slot, ok, nil
}
