package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
)

// ErrFinalState is returned when a change is asked of a rotation that is
// committed or rolled back: its record is final.
var ErrFinalState = errors.New("rotation is finished")

// Rows as stored. Times are nanoseconds since the Unix epoch. Field names
// avoid CreatedAt/UpdatedAt so that gorm never fills them in by itself.

type rotationRow struct {
	ID         int64  `gorm:"column:id;primaryKey"`
	Secret     string `gorm:"column:secret"`
	SecretID   int64  `gorm:"column:secret_id"`
	Username   string `gorm:"column:username"`
	Kind       string `gorm:"column:kind"`
	State      string `gorm:"column:state"`
	Error      string `gorm:"column:error"`
	RollbackOf *int64 `gorm:"column:rollback_of"`
	LeaseGen   int64  `gorm:"column:lease_gen"`
	StartedNS  int64  `gorm:"column:started_at"`
	ChangedNS  int64  `gorm:"column:updated_at"`
}

func (rotationRow) TableName() string { return "rotations" }

type hostRow struct {
	RotationID int64  `gorm:"column:rotation_id;primaryKey"`
	Host       string `gorm:"column:host;primaryKey"`
	Position   int    `gorm:"column:position"`
	Name       string `gorm:"column:name"`
	Port       int    `gorm:"column:port"`
	State      string `gorm:"column:state"`
	Attempts   int    `gorm:"column:attempts"`
	LastError  string `gorm:"column:last_error"`
	FailReason string `gorm:"column:fail_reason"` // the code of LastError (rotation.FailReason)
	ChangedNS  int64  `gorm:"column:updated_at"`
	Refused    string `gorm:"column:refused;->"`  // written by SetRefused only
	Refusals   int    `gorm:"column:refusals;->"` // written by SetRefused only
}

func (hostRow) TableName() string { return "rotation_hosts" }

type sealedRow struct {
	RotationID int64  `gorm:"column:rotation_id;primaryKey"`
	Role       string `gorm:"column:role;primaryKey"`
	KeyID      string `gorm:"column:key_id"`
	Nonce      []byte `gorm:"column:nonce"`
	Ciphertext []byte `gorm:"column:ciphertext"`
}

func (sealedRow) TableName() string { return "sealed_passwords" }

type auditRow struct {
	ID         int64  `gorm:"column:id;primaryKey"`
	AtNS       int64  `gorm:"column:at"`
	Secret     string `gorm:"column:secret"`
	RotationID *int64 `gorm:"column:rotation_id"`
	Actor      string `gorm:"column:actor"`
	Action     string `gorm:"column:action"`
	Detail     string `gorm:"column:detail"`
}

func (auditRow) TableName() string { return "audit_events" }

func fromNS(ns int64) time.Time { return time.Unix(0, ns).UTC() }

func (db *DB) nowNS() int64 { return db.now().UnixNano() }

var validKinds = []rotation.Kind{rotation.KindRotate, rotation.KindRollback, rotation.KindReconcile}

var validStates = []rotation.State{
	rotation.StatePending, rotation.StateHostsChanging, rotation.StateCommitting, rotation.StateCommitted,
	rotation.StateRollingBack, rotation.StateRolledBack, rotation.StateNeedsReconcile,
}

var validHostStates = []rotation.HostState{
	rotation.HostPending, rotation.HostChanging, rotation.HostChanged, rotation.HostReverting,
	rotation.HostReverted, rotation.HostFailed, rotation.HostNeedsReconcile,
}

// final reports whether a rotation in state s may no longer change.
func final(s rotation.State) bool {
	return s == rotation.StateCommitted || s == rotation.StateRolledBack
}

// Begin records r in state pending, with its passwords sealed and one
// record per host (in state pending unless given), all in one transaction,
// and returns its id. r.New must not be empty; r.State and r.ID are ignored.
// The rotation is journaled under rotation.SecretKey(r.Secret) and belongs
// to lease generation r.Generation, which must be the current generation
// of the secret's lease (else an error satisfying rotation.ErrFenced); 0
// begins a rotation that is not fenced.
func (db *DB) Begin(ctx context.Context, r rotation.Rotation) (int64, error) {
	if err := validateBegin(r); err != nil {
		return 0, fmt.Errorf("begin rotation of %q: %w", r.Secret, err)
	}
	keys := db.keys.Load()
	if keys == nil || keys.current.IsZero() {
		return 0, fmt.Errorf("begin rotation of %q: %w", r.Secret, ErrNoKey)
	}
	now := db.nowNS()
	started := now
	if !r.Started.IsZero() {
		started = r.Started.UnixNano()
	}
	key := rotation.SecretKey(r.Secret)
	row := rotationRow{
		Secret: key, SecretID: int64(r.SecretID), Username: r.Username,
		Kind: string(r.Kind), State: string(rotation.StatePending), Error: r.Error,
		LeaseGen: r.Generation, StartedNS: started, ChangedNS: now,
	}
	if r.RollbackOf != 0 {
		row.RollbackOf = &r.RollbackOf
	}
	// On PostgreSQL a failed attempt whose commit's answer was lost may
	// have landed: before another attempt, the new password's nonce (random,
	// one per attempt) tells whether it did, so a retry never journals the
	// rotation twice.
	var nonce []byte
	err := db.retry(ctx, func() error {
		if nonce != nil {
			var id int64
			res := db.gdb.WithContext(ctx).Raw(`SELECT rotation_id FROM sealed_passwords WHERE role = ? AND nonce = ?`,
				roleNew, nonce).Scan(&id)
			if res.Error != nil {
				return res.Error
			}
			if res.RowsAffected == 1 {
				row.ID = id
				return nil
			}
		}
		row.ID = 0
		return db.gdb.WithContext(ctx).Transaction(func(tx *gorm.DB) error { return db.begin(tx, r, &row, keys, key, now, &nonce) })
	})
	if err != nil {
		return 0, fmt.Errorf("begin rotation of %q: %w", r.Secret, err)
	}
	return row.ID, nil
}

// begin is one attempt of Begin inside tx; *nonce is set to the nonce of
// the new password it seals.
func (db *DB) begin(tx *gorm.DB, r rotation.Rotation, row *rotationRow, keys *Keyring, key string, now int64, nonce *[]byte) error {
	{
		if err := sealGuard(tx, keys); err != nil {
			return err
		}
		if err := checkFence(tx, key, r.Generation, r.Generation); err != nil {
			return err
		}
		if err := tx.Exec(`INSERT INTO secrets (name) VALUES (?) ON CONFLICT (name) DO NOTHING`, key).Error; err != nil {
			return fmt.Errorf("record secret: %w", err)
		}
		if err := tx.Create(row).Error; err != nil {
			return fmt.Errorf("insert rotation: %w", err)
		}
		for _, p := range []struct {
			role string
			pw   secret.Value
		}{{roleOld, r.Old}, {roleNew, r.New}} {
			s, err := keys.seal(row.ID, p.role, p.pw)
			if err != nil {
				return err
			}
			if p.role == roleNew {
				*nonce = s.Nonce
			}
			sr := sealedRow{RotationID: row.ID, Role: p.role, KeyID: s.KeyID, Nonce: s.Nonce, Ciphertext: s.Ciphertext}
			if err := tx.Create(&sr).Error; err != nil {
				return fmt.Errorf("insert sealed password: %w", err)
			}
		}
		if len(r.Hosts) > 0 {
			hosts := make([]hostRow, len(r.Hosts))
			for i, h := range r.Hosts {
				st := h.State
				if st == "" {
					st = rotation.HostPending
				}
				hosts[i] = hostRow{
					RotationID: row.ID, Host: h.Host.String(), Position: i, Name: h.Host.Name, Port: h.Host.Port,
					State: string(st), Attempts: h.Attempts, LastError: h.Error, FailReason: string(h.Reason), ChangedNS: now,
				}
			}
			if err := tx.Create(&hosts).Error; err != nil {
				return fmt.Errorf("insert hosts: %w", err)
			}
		}
		return nil
	}
}

func validateBegin(r rotation.Rotation) error {
	switch {
	case r.Secret == "":
		return errors.New("empty secret name")
	case !slices.Contains(validKinds, r.Kind):
		return fmt.Errorf("unknown kind %q", r.Kind)
	case r.New.IsZero():
		return errors.New("empty new password")
	case r.Kind == rotation.KindRollback && r.RollbackOf == 0:
		return errors.New("rollback without the rotation it rolls back")
	}
	seen := make(map[string]bool, len(r.Hosts))
	for _, h := range r.Hosts {
		key := h.Host.String()
		if h.Host.Name == "" {
			return errors.New("host with empty name")
		}
		if seen[key] {
			return fmt.Errorf("host %s listed twice", key)
		}
		seen[key] = true
		if h.State != "" && !slices.Contains(validHostStates, h.State) {
			return fmt.Errorf("host %s: unknown state %q", key, h.State)
		}
	}
	return nil
}

// lockRotation reads the state of rotation id inside tx for a write by
// lease generation gen; ErrNotFound if there is none, an error satisfying
// rotation.ErrFenced if gen may not write it (see checkFence).
func lockRotation(tx *gorm.DB, id, gen int64) (rotation.State, error) {
	var row struct {
		State    string
		Secret   string
		LeaseGen int64
	}
	res := tx.Raw(`SELECT state, secret, lease_gen FROM rotations WHERE id = ?`+forUpdate(tx), id).Scan(&row)
	if res.Error != nil {
		return "", fmt.Errorf("read rotation: %w", res.Error)
	}
	if res.RowsAffected == 0 {
		return "", rotation.ErrNotFound
	}
	if err := checkFence(tx, row.Secret, row.LeaseGen, gen); err != nil {
		return "", err
	}
	return rotation.State(row.State), nil
}

// Adopt makes rotation id belong to lease generation gen: a holder that
// took the secret's lease over recovers the rotation, and from then on the
// holder before it can write no more of it. gen must be the current
// generation of the secret's lease, else the error satisfies
// rotation.ErrFenced. It returns ErrNotFound if there is no such rotation
// and ErrFinalState if it is committed or rolled back.
func (db *DB) Adopt(ctx context.Context, id, gen int64) error {
	err := db.transact(ctx, func(tx *gorm.DB) error {
		var row struct {
			State  string
			Secret string
		}
		res := tx.Raw(`SELECT state, secret FROM rotations WHERE id = ?`+forUpdate(tx), id).Scan(&row)
		if res.Error != nil {
			return fmt.Errorf("read rotation: %w", res.Error)
		}
		if res.RowsAffected == 0 {
			return rotation.ErrNotFound
		}
		if final(rotation.State(row.State)) {
			return fmt.Errorf("%w (%s)", ErrFinalState, row.State)
		}
		if gen <= 0 {
			return fmt.Errorf("lease generation %d: %w", gen, rotation.ErrFenced)
		}
		if err := checkFence(tx, row.Secret, gen, gen); err != nil {
			return err
		}
		return tx.Exec(`UPDATE rotations SET lease_gen = ?, updated_at = ? WHERE id = ?`, gen, db.nowNS(), id).Error
	})
	if err != nil {
		return fmt.Errorf("adopt rotation %d: %w", id, err)
	}
	return nil
}

// SetNew replaces the new password of rotation id with pw, sealed afresh.
// It returns ErrNotFound if there is no such rotation, ErrFinalState if
// the rotation is committed or rolled back, and an error satisfying
// rotation.ErrFenced if lease generation gen may not write it.
func (db *DB) SetNew(ctx context.Context, id, gen int64, pw secret.Value) error {
	if pw.IsZero() {
		return fmt.Errorf("set new password of rotation %d: empty password", id)
	}
	keys := db.keys.Load()
	s, err := keys.seal(id, roleNew, pw)
	if err != nil {
		return fmt.Errorf("set new password of rotation %d: %w", id, err)
	}
	err = db.transact(ctx, func(tx *gorm.DB) error {
		if err := sealGuard(tx, keys); err != nil {
			return err
		}
		st, err := lockRotation(tx, id, gen)
		if err != nil {
			return err
		}
		if final(st) {
			return fmt.Errorf("%w (%s)", ErrFinalState, st)
		}
		if err := tx.Exec(`UPDATE sealed_passwords SET key_id = ?, nonce = ?, ciphertext = ? WHERE rotation_id = ? AND role = ?`,
			s.KeyID, s.Nonce, s.Ciphertext, id, roleNew).Error; err != nil {
			return fmt.Errorf("update sealed password: %w", err)
		}
		return tx.Exec(`UPDATE rotations SET updated_at = ? WHERE id = ?`, db.nowNS(), id).Error
	})
	if err != nil {
		return fmt.Errorf("set new password of rotation %d: %w", id, err)
	}
	return nil
}

// SetState moves rotation id to st and records errText ("" clears it).
// Setting the state a rotation already has is allowed (and updates the
// error text). A committed or rolled-back rotation is final: moving it to
// another state returns ErrFinalState. Committing a rotation records it as
// its secret's last rotation. A write lease generation gen may not make
// returns an error satisfying rotation.ErrFenced.
func (db *DB) SetState(ctx context.Context, id, gen int64, st rotation.State, errText string) error {
	if !slices.Contains(validStates, st) {
		return fmt.Errorf("set state of rotation %d: unknown state %q", id, st)
	}
	err := db.transact(ctx, func(tx *gorm.DB) error {
		cur, err := lockRotation(tx, id, gen)
		if err != nil {
			return err
		}
		if final(cur) && cur != st {
			return fmt.Errorf("%w: cannot move from %s to %s", ErrFinalState, cur, st)
		}
		now := db.nowNS()
		if err := tx.Exec(`UPDATE rotations SET state = ?, error = ?, updated_at = ? WHERE id = ?`,
			string(st), errText, now, id).Error; err != nil {
			return fmt.Errorf("update rotation: %w", err)
		}
		if st == rotation.StateCommitted && cur != st {
			if err := tx.Exec(`UPDATE secrets SET last_rotation_id = ?, last_rotated_at = ?
				WHERE name = (SELECT secret FROM rotations WHERE id = ?)
				AND (last_rotation_id IS NULL OR last_rotation_id < ?)`, id, now, id, id).Error; err != nil {
				return fmt.Errorf("update secret: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("set state of rotation %d: %w", id, err)
	}
	return nil
}

// SetHost records the state, attempts, failure reason and error of one host of rotation id,
// matched by h.Host.String(). It returns ErrNotFound if the rotation has no
// such host, ErrFinalState if the rotation is committed or rolled back, and
// an error satisfying rotation.ErrFenced if lease generation gen may not
// write it.
func (db *DB) SetHost(ctx context.Context, id, gen int64, h rotation.HostRecord) error {
	if !slices.Contains(validHostStates, h.State) {
		return fmt.Errorf("set host %s of rotation %d: unknown state %q", h.Host, id, h.State)
	}
	err := db.updateHost(ctx, id, gen, h.Host, `state = ?, attempts = ?, fail_reason = ?, last_error = ?`,
		string(h.State), h.Attempts, string(h.Reason), h.Error)
	if err != nil {
		return fmt.Errorf("set host %s of rotation %d: %w", h.Host, id, err)
	}
	return nil
}

// SetRefused records what host h of rotation id refused: which candidate
// passwords (never the passwords themselves) and how many logins. It
// returns ErrNotFound if the rotation has no such host and ErrFinalState
// if the rotation is committed or rolled back; like SetHost, it is fenced
// by the writer's lease generation gen.
func (db *DB) SetRefused(ctx context.Context, id, gen int64, h rotation.Host, r rotation.Refusals) error {
	err := db.updateHost(ctx, id, gen, h, `refused = ?, refusals = ?`, refusedColumn(r), r.Count)
	if err != nil {
		return fmt.Errorf("record refusals of host %s of rotation %d: %w", h, id, err)
	}
	return nil
}

// updateHost sets columns of host h's row of rotation id (set: the
// "col = ?, ..." list, args its values), fenced by lease generation gen,
// refused once the rotation is final.
func (db *DB) updateHost(ctx context.Context, id, gen int64, h rotation.Host, set string, args ...any) error {
	return db.transact(ctx, func(tx *gorm.DB) error {
		st, err := lockRotation(tx, id, gen)
		if err != nil {
			return err
		}
		if final(st) {
			return fmt.Errorf("%w (%s)", ErrFinalState, st)
		}
		now := db.nowNS()
		res := tx.Exec(`UPDATE rotation_hosts SET `+set+`, updated_at = ? WHERE rotation_id = ? AND host = ?`,
			append(args, now, id, h.String())...)
		if res.Error != nil {
			return fmt.Errorf("update host: %w", res.Error)
		}
		if res.RowsAffected == 0 {
			return fmt.Errorf("no such host: %w", rotation.ErrNotFound)
		}
		return tx.Exec(`UPDATE rotations SET updated_at = ? WHERE id = ?`, now, id).Error
	})
}

// refusedColumn returns the refused column's value for r.
func refusedColumn(r rotation.Refusals) string {
	switch {
	case r.Old && r.New:
		return "old,new"
	case r.Old:
		return "old"
	case r.New:
		return "new"
	}
	return ""
}

func refusalsFromRow(refused string, count int) rotation.Refusals {
	return rotation.Refusals{
		Old:   refused == "old" || refused == "old,new",
		New:   refused == "new" || refused == "old,new",
		Count: count,
	}
}

// Get returns rotation id with its hosts and passwords. It returns an error
// satisfying errors.Is(err, rotation.ErrNotFound) if there is none, and
// ErrUnseal if its passwords cannot be unsealed.
func (db *DB) Get(ctx context.Context, id int64) (rotation.Rotation, error) {
	rs, err := db.loadFull(ctx, `id = ?`, id)
	if err != nil {
		return rotation.Rotation{}, fmt.Errorf("get rotation %d: %w", id, err)
	}
	if len(rs) == 0 {
		return rotation.Rotation{}, fmt.Errorf("get rotation %d: %w", id, rotation.ErrNotFound)
	}
	return rs[0], nil
}

// Unfinished returns, oldest first and with their passwords, the rotations
// not in a terminal state.
func (db *DB) Unfinished(ctx context.Context) ([]rotation.Rotation, error) {
	rs, err := db.loadFull(ctx, `state IN ('pending', 'hosts-changing', 'committing', 'rolling-back') ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list unfinished rotations: %w", err)
	}
	return rs, nil
}

// NeedsReconcile returns, oldest first and with their passwords, the
// rotations in state needs-reconcile.
func (db *DB) NeedsReconcile(ctx context.Context) ([]rotation.Rotation, error) {
	rs, err := db.loadFull(ctx, `state = 'needs-reconcile' ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list rotations needing reconcile: %w", err)
	}
	return rs, nil
}

// LastCommitted returns, with its passwords, the newest committed rotation
// of the secret whose id is below beforeID (0: any). It returns an error
// satisfying errors.Is(err, rotation.ErrNotFound) if there is none.
func (db *DB) LastCommitted(ctx context.Context, secretName string, beforeID int64) (rotation.Rotation, error) {
	if beforeID <= 0 {
		beforeID = 1<<63 - 1
	}
	rs, err := db.loadFull(ctx, `secret = ? AND id < ? AND state = 'committed' ORDER BY id DESC LIMIT 1`,
		rotation.SecretKey(secretName), beforeID)
	if err != nil {
		return rotation.Rotation{}, fmt.Errorf("last committed rotation of %q: %w", secretName, err)
	}
	if len(rs) == 0 {
		return rotation.Rotation{}, fmt.Errorf("last committed rotation of %q: %w", secretName, rotation.ErrNotFound)
	}
	return rs[0], nil
}

// loadFull reads the rotations matching the WHERE clause (and its ORDER BY)
// with hosts and unsealed passwords, in one read transaction.
func (db *DB) loadFull(ctx context.Context, where string, args ...any) ([]rotation.Rotation, error) {
	keys := db.keys.Load()
	var out []rotation.Rotation
	err := db.transact(ctx, func(tx *gorm.DB) error {
		var rows []rotationRow
		if err := tx.Raw(`SELECT * FROM rotations WHERE `+where, args...).Scan(&rows).Error; err != nil {
			return fmt.Errorf("read rotations: %w", err)
		}
		if len(rows) == 0 {
			return nil
		}
		ids := make([]int64, len(rows))
		for i, r := range rows {
			ids[i] = r.ID
		}
		hosts, err := loadHosts(tx, ids)
		if err != nil {
			return err
		}
		var seals []sealedRow
		if err := tx.Where("rotation_id IN ?", ids).Find(&seals).Error; err != nil {
			return fmt.Errorf("read sealed passwords: %w", err)
		}
		byID := make(map[int64]map[string]sealedRow, len(rows))
		for _, s := range seals {
			if byID[s.RotationID] == nil {
				byID[s.RotationID] = make(map[string]sealedRow, 2)
			}
			byID[s.RotationID][s.Role] = s
		}
		out = make([]rotation.Rotation, 0, len(rows))
		for _, row := range rows {
			r := row.toRotation(hosts[row.ID])
			for _, p := range []struct {
				role string
				dst  *secret.Value
			}{{roleOld, &r.Old}, {roleNew, &r.New}} {
				s, ok := byID[row.ID][p.role]
				if !ok {
					return fmt.Errorf("rotation %d has no sealed %s password: %w", row.ID, p.role, ErrUnseal)
				}
				v, err := keys.unseal(row.ID, p.role, sealed{KeyID: s.KeyID, Nonce: s.Nonce, Ciphertext: s.Ciphertext})
				if err != nil {
					return err
				}
				*p.dst = v
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// loadHosts returns the host records of the given rotations, in their
// listed order.
func loadHosts(tx *gorm.DB, ids []int64) (map[int64][]rotation.HostRecord, error) {
	var rows []hostRow
	if err := tx.Where("rotation_id IN ?", ids).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("read hosts: %w", err)
	}
	slices.SortFunc(rows, func(a, b hostRow) int {
		if a.RotationID != b.RotationID {
			return compare(a.RotationID, b.RotationID)
		}
		return compare(a.Position, b.Position)
	})
	out := make(map[int64][]rotation.HostRecord, len(ids))
	for _, h := range rows {
		out[h.RotationID] = append(out[h.RotationID], rotation.HostRecord{
			Host:     rotation.Host{Name: h.Name, Port: h.Port},
			State:    rotation.HostState(h.State),
			Attempts: h.Attempts,
			Reason:   rotation.FailReason(h.FailReason),
			Error:    h.LastError,
			Refused:  refusalsFromRow(h.Refused, h.Refusals),
		})
	}
	return out, nil
}

func compare[T int | int64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (row rotationRow) toRotation(hosts []rotation.HostRecord) rotation.Rotation {
	r := rotation.Rotation{
		ID: row.ID, Secret: row.Secret, SecretID: int(row.SecretID), Username: row.Username,
		Kind: rotation.Kind(row.Kind), State: rotation.State(row.State), Hosts: hosts, Error: row.Error,
		Generation: row.LeaseGen, Started: fromNS(row.StartedNS), Updated: fromNS(row.ChangedNS),
	}
	if row.RollbackOf != nil {
		r.RollbackOf = *row.RollbackOf
	}
	return r
}

// Default and largest page sizes of History.
const (
	DefaultHistoryLimit = 50
	MaxHistoryLimit     = 1000
)

// History lists rotations newest first, with their hosts and without their
// passwords. q.Secret matches any spelling of the name (rotation.SecretKey);
// rotations carry the key as their Secret. q.Limit defaults to DefaultHistoryLimit and is capped at
// MaxHistoryLimit; page on with q.BeforeID set to the last id returned.
// It needs no key.
func (db *DB) History(ctx context.Context, q rotation.HistoryQuery) ([]rotation.Rotation, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultHistoryLimit
	}
	limit = min(limit, MaxHistoryLimit)
	before := q.BeforeID
	if before <= 0 {
		before = 1<<63 - 1
	}
	var where []string
	var args []any
	if q.Secret != "" {
		where = append(where, "secret = ?")
		args = append(args, rotation.SecretKey(q.Secret))
	}
	where = append(where, "id < ?")
	args = append(args, before, limit)
	var rows []rotationRow
	var hosts map[int64][]rotation.HostRecord
	err := db.retry(ctx, func() error {
		g := db.gdb.WithContext(ctx)
		rows = nil
		if err := g.Raw(`SELECT * FROM rotations WHERE `+strings.Join(where, " AND ")+` ORDER BY id DESC LIMIT ?`,
			args...).Scan(&rows).Error; err != nil {
			return err
		}
		ids := make([]int64, len(rows))
		for i, r := range rows {
			ids[i] = r.ID
		}
		var err error
		hosts, err = loadHosts(g, ids)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read history: %w", err)
	}
	if len(rows) == 0 {
		return nil, nil
	}
	out := make([]rotation.Rotation, len(rows))
	for i, row := range rows {
		out[i] = row.toRotation(hosts[row.ID])
	}
	return out, nil
}

// Audit appends an event; a zero e.Time means now. Events never hold a
// password: callers put none in Detail.
func (db *DB) Audit(ctx context.Context, e rotation.Event) error {
	at := e.Time
	if at.IsZero() {
		at = db.now()
	}
	row := auditRow{AtNS: at.UnixNano(), Secret: rotation.SecretKey(e.Secret), Actor: e.Actor, Action: e.Action, Detail: e.Detail}
	if e.RotationID != 0 {
		row.RotationID = &e.RotationID
	}
	if err := db.retry(ctx, func() error {
		row.ID = 0
		return db.gdb.WithContext(ctx).Create(&row).Error
	}); err != nil {
		return fmt.Errorf("record audit event %q: %w", e.Action, err)
	}
	return nil
}

// AuditQuery selects audit events, newest first.
type AuditQuery struct {
	Secret   string // "" for all
	Action   string // "" for all; else only events of this action ("heartbeat", ...)
	BeforeID int64  // 0 for the newest; else only events with smaller ids
	Limit    int    // defaults to DefaultHistoryLimit, capped at MaxHistoryLimit
}

// AuditEvent is a recorded audit event with its id, for paging.
type AuditEvent struct {
	ID int64
	rotation.Event
}

// AuditLog lists audit events newest first. q.Secret matches any spelling
// of the name (rotation.SecretKey).
func (db *DB) AuditLog(ctx context.Context, q AuditQuery) ([]AuditEvent, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultHistoryLimit
	}
	limit = min(limit, MaxHistoryLimit)
	before := q.BeforeID
	if before <= 0 {
		before = 1<<63 - 1
	}
	g := db.gdb.WithContext(ctx).Where("id < ?", before)
	if q.Secret != "" {
		g = g.Where("secret = ?", rotation.SecretKey(q.Secret))
	}
	if q.Action != "" {
		g = g.Where("action = ?", q.Action)
	}
	var rows []auditRow
	if err := g.Order("id DESC").Limit(limit).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	out := make([]AuditEvent, len(rows))
	for i, r := range rows {
		out[i] = AuditEvent{ID: r.ID, Event: rotation.Event{
			Time: fromNS(r.AtNS), Secret: r.Secret, Actor: r.Actor, Action: r.Action, Detail: r.Detail,
		}}
		if r.RotationID != nil {
			out[i].RotationID = *r.RotationID
		}
	}
	return out, nil
}
