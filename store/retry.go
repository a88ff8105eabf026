package store

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"
)

// DefaultRetryWindow is how long a PostgreSQL store keeps trying a
// statement that failed for a reason a retry can cure (the server
// restarting, a fail-over, a broken connection) before it returns the
// error; see WithRetryWindow.
const DefaultRetryWindow = 20 * time.Second

// transact runs fn in one transaction, again while it fails transiently
// (see retry).
func (db *DB) transact(ctx context.Context, fn func(tx *gorm.DB) error) error {
	return db.retry(ctx, func() error { return db.gdb.WithContext(ctx).Transaction(fn) })
}

// retry calls op, and on PostgreSQL calls it again while it fails for a
// transient reason (transient), with a growing pause, until the retry
// window passes or ctx is done; it returns op's last error. op must be
// safe to repeat after an attempt whose outcome is unknown: every write of
// the store is (a repeated state change or lease renewal writes the same
// row again), except Begin, which checks first (see Begin). On SQLite op
// runs once: its errors are not cured by waiting longer than the busy
// timeout already does.
func (db *DB) retry(ctx context.Context, op func() error) error {
	err := op()
	if err == nil || db.dialect != dialectPostgres || !transient(err) {
		return err
	}
	deadline := time.Now().Add(db.retryWindow)
	pause := 50 * time.Millisecond
	for time.Now().Before(deadline) {
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		pause = min(pause*2, time.Second)
		db.log.Warn("database statement failed for a transient reason; retrying", "err", err)
		if err = op(); err == nil || !transient(err) {
			return err
		}
	}
	return err
}

// transient reports whether a PostgreSQL error is worth another attempt:
// the connection could not be made or broke, the server is shutting down
// or starting, or the transaction lost a serialization or deadlock race
// (then the server rolled it back).
func transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case len(pgErr.Code) == 5 && pgErr.Code[:2] == "08": // connection exception
			return true
		case pgErr.Code == "40001", pgErr.Code == "40P01": // serialization failure, deadlock
			return true
		case pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03": // shutdown, crash, starting
			return true
		case pgErr.Code == "53300": // too many connections
			return true
		}
		return false
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return pgconn.SafeToRetry(err) || errors.As(err, &connectErr) || errors.As(err, &netErr) ||
		errors.Is(err, driver.ErrBadConn) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ENOENT) // the server's socket file is gone while it restarts
}

// forUpdate is the locking clause of a read inside a write transaction:
// on PostgreSQL the row read stays locked until the transaction ends, so
// that a check (the fencing generation, a rotation's state) holds at
// commit; SQLite's transactions hold the database's write lock from BEGIN
// (_txlock=immediate) and need none.
func forUpdate(tx *gorm.DB) string {
	if tx.Dialector.Name() == dialectPostgres {
		return " FOR UPDATE"
	}
	return ""
}
