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

// ClaimSlot tells holder, which holds the secret's lease, whether the
// secret's current scheduled slot is its to rotate, so that of several
// daemons sharing the journal exactly one rotates each slot. The slot is
// the secret's recorded next due time (ScheduleState), which every daemon
// reads and writes: their own due times differ (jitter, @every schedules
// that do not line up), the recorded one is shared. ok is true, with the
// slot's due time, when that time has come (at or before now) and no
// rotation of the secret (kind rotate) started at or after it committed;
// a secret with no due time recorded has slot now. When ok is false, slot
// is the due time of a slot that was served (a rotation committed since),
// or zero when the recorded due time has not come (the slot was served and
// the next one recorded).
//
// It decides in one transaction under the secret's lease (the lease row
// locked FOR UPDATE on PostgreSQL; SQLite's write lock): it returns a
// *rotation.LeaseHeldError unless holder has the lease. A daemon whose
// rotation of the slot committed records the next due time after it, so
// one that takes the lease after it finds the slot served either way.
func (db *DB) ClaimSlot(ctx context.Context, secretName, holder string, now time.Time) (slot time.Time, ok bool, err error) {
	if secretName == "" || holder == "" {
		return time.Time{}, false, errors.New("claim slot: empty secret name or holder")
	}
	key := rotation.SecretKey(secretName)
	var held *rotation.LeaseHeldError
	err = db.transact(ctx, func(tx *gorm.DB) error {
		ok, held = false, nil
		var lease struct {
			Holder    string
			ExpiresAt int64
		}
		res := tx.Raw(`SELECT holder, expires_at FROM leases WHERE secret = ?`+forUpdate(tx), key).Scan(&lease)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 || lease.Holder != holder || lease.ExpiresAt <= db.nowNS() {
			held = &rotation.LeaseHeldError{Secret: secretName, Holder: lease.Holder, Expires: fromNS(lease.ExpiresAt)}
			return nil
		}
		var due *int64
		if err := tx.Raw(`SELECT next_due FROM secrets WHERE name = ?`, key).Scan(&due).Error; err != nil {
			return err
		}
		if due == nil {
			slot, ok = now, true
			return nil
		}
		if *due > now.UnixNano() {
			return nil
		}
		var served []int64
		if err := tx.Raw(`SELECT id FROM rotations WHERE secret = ? AND kind = ? AND state = ? AND started_at >= ? LIMIT 1`,
			key, string(rotation.KindRotate), string(rotation.StateCommitted), *due).Scan(&served).Error; err != nil {
			return err
		}
		slot, ok = fromNS(*due), len(served) == 0
		return nil
	})
	if err != nil {
		return time.Time{}, false, fmt.Errorf("claim slot of %q: %w", secretName, err)
	}
	if held != nil {
		return time.Time{}, false, held
	}
	return slot, ok, nil
}
