package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"gorm.io/gorm"
)

// ErrNotEmpty is returned by CopyFrom when the target journal already
// holds rotations, secrets, leases or audit events.
var ErrNotEmpty = errors.New("the target journal is not empty")

// ErrUnfinished is returned by CopyFrom when the source journal holds
// rotations that are not finished: recover them first (rotord recover),
// with the rotord that wrote them.
var ErrUnfinished = errors.New("the source journal has unfinished rotations")

// copyTables are the journal's tables in an order that keeps every
// reference valid, with the order of their rows (rotations refer to the
// rotations they roll back, which have smaller ids). Instances are not
// copied: they are the daemons of the source's database.
var copyTables = []struct{ name, order string }{
	{"secrets", "name"},
	{"rotations", "id"},
	{"rotation_hosts", "rotation_id, host"},
	{"sealed_passwords", "rotation_id, role"},
	{"audit_events", "id"},
	{"leases", "secret"},
	{"sealing_key", "id"},
}

// copyBatch is how many rows one INSERT of CopyFrom carries.
const copyBatch = 200

// CopyFrom copies the journal src into db, which must be empty (else
// ErrNotEmpty), in one transaction: every row as it is, ids, times and
// sealed passwords included, so the same key opens them (they are bound to
// their rotation ids, which are kept). Leases keep their generations but
// not their holders: the processes of the source's database hold nothing
// here. It refuses a source with unfinished rotations (ErrUnfinished).
// Both journals must be at the same schema version (Open migrates both).
// It returns how many rows it copied, by table.
func (db *DB) CopyFrom(ctx context.Context, src *DB) (map[string]int, error) {
	sv, err := src.SchemaVersion(ctx)
	if err != nil {
		return nil, err
	}
	dv, err := db.SchemaVersion(ctx)
	if err != nil {
		return nil, err
	}
	if sv != dv {
		return nil, fmt.Errorf("copy journal: source schema version %d, target %d: migrate both with this rotord", sv, dv)
	}
	var open int64
	if err := src.sql.QueryRowContext(ctx, `SELECT count(*) FROM rotations
		WHERE state IN ('pending', 'hosts-changing', 'committing', 'rolling-back')`).Scan(&open); err != nil {
		return nil, fmt.Errorf("copy journal: read source: %w", err)
	}
	if open > 0 {
		return nil, fmt.Errorf("copy journal: %d rotations: %w; run rotord recover with the source journal first", open, ErrUnfinished)
	}
	counts := map[string]int{}
	err = db.gdb.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		for _, t := range append(copyTables, struct{ name, order string }{"instances", "id"}) {
			var n int64
			if err := tx.Raw(`SELECT count(*) FROM ` + t.name).Scan(&n).Error; err != nil {
				return err
			}
			if n > 0 {
				return fmt.Errorf("%w: table %s has %d rows", ErrNotEmpty, t.name, n)
			}
		}
		for _, t := range copyTables {
			n, err := copyTable(ctx, src.sql, tx, t.name, t.order)
			if err != nil {
				return fmt.Errorf("table %s: %w", t.name, err)
			}
			counts[t.name] = n
		}
		if err := tx.Exec(`UPDATE leases SET holder = '', expires_at = 0`).Error; err != nil {
			return err
		}
		if db.dialect == dialectPostgres {
			// New rows continue after the copied ids.
			for _, t := range []string{"rotations", "audit_events"} {
				if err := tx.Exec(`SELECT setval(pg_get_serial_sequence('` + t + `', 'id'),
					coalesce((SELECT max(id) FROM ` + t + `), 0) + 1, false)`).Error; err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("copy journal: %w", err)
	}
	return counts, nil
}

// copyTable copies every row of table from src into tx, column by column
// as the source names them, and returns how many.
func copyTable(ctx context.Context, src *sql.DB, tx *gorm.DB, table, order string) (int, error) {
	rows, err := src.QueryContext(ctx, `SELECT * FROM `+table+` ORDER BY `+order)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return 0, err
	}
	row := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ") + ")"
	insert := `INSERT INTO ` + table + ` (` + strings.Join(cols, ", ") + `) VALUES `
	var batch []any
	n, inBatch := 0, 0
	flush := func() error {
		if inBatch == 0 {
			return nil
		}
		stmt := insert + strings.TrimSuffix(strings.Repeat(row+", ", inBatch), ", ")
		err := tx.Exec(stmt, batch...).Error
		batch, inBatch = batch[:0], 0
		return err
	}
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return n, err
		}
		batch = append(batch, vals...)
		inBatch++
		n++
		if inBatch == copyBatch {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return n, err
	}
	return n, flush()
}
