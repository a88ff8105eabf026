// Package store keeps rotord's rotation journal in a SQLite database (Open)
// or a PostgreSQL database (OpenPostgres): the rotations with their hosts
// and sealed passwords, the audit trail, the leases that keep one rotation
// per secret, and what the scheduler must remember across restarts. Both
// run the same numbered migrations (package migrations) and the same
// statements; where SQLite serializes writers with its write lock,
// PostgreSQL locks the rows a write checks (SELECT ... FOR UPDATE).
//
// Passwords are sealed with AES-256-GCM under a key from a Keyring before
// they reach the database; each sealed value is bound to its rotation and
// role (old or new), so values cannot be swapped unnoticed. Every method
// that changes state returns after the change is on disk (WAL with
// synchronous=FULL; on PostgreSQL, after the commit).
//
// A DB is safe for concurrent use, and several processes may share one
// database file; several machines may share one PostgreSQL database.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mattn/go-sqlite3"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/rotord/rotord/migrations"
	"github.com/rotord/rotord/rotation"
)

// The store implements the engine's persistence interfaces.
var (
	_ rotation.Journal       = (*DB)(nil)
	_ rotation.Leases        = (*DB)(nil)
	_ rotation.ScheduleState = (*DB)(nil)
)

// ErrSchemaTooNew is returned by Open and Migrate when the database was
// migrated by a newer rotord than this one. The database is left untouched;
// run the newer rotord, or restore a backup.
var ErrSchemaTooNew = errors.New("database schema is newer than this rotord; upgrade rotord")

// driverName is SQLite with rotord's functions registered on every
// connection: rotord_secret_key(name) is rotation.SecretKey, so that SQL
// (the migrations) keys secrets exactly as the Go code does.
const driverName = "sqlite3_rotord"

func init() {
	sql.Register(driverName, &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
		return c.RegisterFunc("rotord_secret_key", rotation.SecretKey, true)
	}})
}

// busyTimeout is how long a statement waits for another connection or
// process holding the write lock.
const busyTimeout = 10 * time.Second

// ErrInUse is returned by Rekey when another process has the database open
// (the daemon, or a command such as rotate): it needs the database alone.
var ErrInUse = errors.New("the journal is in use by another rotord process (`rotord run` or a command): stop the daemon and wait for running commands first")

// DB is an open journal database.
type DB struct {
	gdb     *gorm.DB
	sql     *sql.DB
	use     *os.File                // SQLite: shared flock on path+".lock" while open; Rekey takes it exclusive
	useConn *sql.Conn               // PostgreSQL: the session holding the use lock shared (useLockKey)
	path    string                  // SQLite: the file; PostgreSQL: a description without password
	dialect string                  // dialectSQLite or dialectPostgres
	keys    atomic.Pointer[Keyring] // replaced by Rekey
	now     func() time.Time
	log     *slog.Logger

	retryWindow time.Duration // PostgreSQL: how long transient failures are retried
}

// Option configures Open and Migrate.
type Option func(*options)

type options struct {
	now         func() time.Time
	log         *slog.Logger
	retryWindow time.Duration
}

// WithNow sets the clock used for timestamps and lease expiry (time.Now by
// default).
func WithNow(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithLogger sets the logger for schema migrations and retried statements
// (silent by default).
func WithLogger(log *slog.Logger) Option { return func(o *options) { o.log = log } }

// WithRetryWindow sets how long a PostgreSQL store retries a statement
// that failed for a transient reason (DefaultRetryWindow by default). Keep
// it below the lease TTL's half: a rotation whose lease renewals fail for
// that long gives up before its lease can expire. SQLite ignores it.
func WithRetryWindow(d time.Duration) Option { return func(o *options) { o.retryWindow = d } }

// Open opens the journal database at path, creating it (mode 0600) if it
// does not exist, and applies pending migrations. It refuses a database
// whose schema is newer than this binary with an error satisfying
// errors.Is(err, ErrSchemaTooNew).
//
// keys seals and unseals passwords; it may be nil for uses that need no
// password (history, leases, migrations), in which case those that do
// return ErrNoKey. A non-nil keyring must open the newest sealed password
// in the database (see CheckKey), so a wrong key file is refused here
// with an error satisfying errors.Is(err, ErrUnseal).
func Open(ctx context.Context, path string, keys *Keyring, opts ...Option) (*DB, error) {
	db, err := open(ctx, path, keys, opts)
	return finishOpen(ctx, db, err, keys)
}

// Migrate applies the pending migrations to the database at path, creating
// it if need be, and returns the schema versions before and after. It
// refuses a database newer than this binary with ErrSchemaTooNew.
func Migrate(ctx context.Context, path string, opts ...Option) (from, to int64, err error) {
	db, err := open(ctx, path, nil, opts)
	return migrateOnce(ctx, db, err)
}

// migrateOnce migrates db, just opened (unless err), and closes it.
func migrateOnce(ctx context.Context, db *DB, err error) (from, to int64, _ error) {
	if err != nil {
		return 0, 0, err
	}
	from, to, err = db.Migrate(ctx)
	if cerr := db.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return from, to, err
}

func open(ctx context.Context, path string, keys *Keyring, opts []Option) (*DB, error) {
	o := options{now: time.Now, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, opt := range opts {
		opt(&o)
	}
	if path == "" {
		return nil, errors.New("open database: empty path")
	}
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("open database %s: path must not contain '?' or '#'", path)
	}
	// Create the file ourselves so that it, and the -wal and -shm files
	// SQLite derives from it, are private. An existing file is not opened
	// here: closing a descriptor would drop SQLite's locks in this process.
	if f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600); err == nil {
		_ = f.Close()
	} else if !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("create database: %w", err)
	}
	// Every process holds a shared lock on the database while it has it
	// open; Rekey needs it alone (an exclusive lock), so that no process
	// keeps sealing with the old key after a rekey.
	use, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open database lock: %w", err)
	}
	if err := flockWait(ctx, use, syscall.LOCK_SH); err != nil {
		_ = use.Close()
		return nil, fmt.Errorf("open database %s: a rekey is running: %w", path, err)
	}
	// Pragmas in the DSN apply to every pooled connection. _txlock=immediate
	// takes the write lock at BEGIN, so two writers never deadlock on a lock
	// upgrade; the busy timeout makes them queue instead of failing.
	dsn := path + "?_journal_mode=WAL&_synchronous=FULL&_foreign_keys=on&_txlock=immediate" +
		fmt.Sprintf("&_busy_timeout=%d", busyTimeout.Milliseconds())
	gdb, err := gorm.Open(sqlite.New(sqlite.Config{DriverName: driverName, DSN: dsn}), &gorm.Config{
		Logger:                 logger.Discard, // statements carry sealed values; never log them
		SkipDefaultTransaction: true,
		NowFunc:                func() time.Time { return o.now().UTC() },
	})
	if err != nil {
		_ = use.Close()
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	sqlDB, err := gdb.DB()
	if err != nil {
		_ = use.Close()
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	db := &DB{gdb: gdb, sql: sqlDB, use: use, path: path, dialect: dialectSQLite, now: o.now, log: o.log}
	db.keys.Store(keys)
	if err := db.checkPragmas(ctx); err != nil {
		_ = sqlDB.Close()
		_ = use.Close()
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	return db, nil
}

// checkPragmas verifies that the durability settings took effect.
func (db *DB) checkPragmas(ctx context.Context) error {
	var mode string
	if err := db.sql.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("read journal mode: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal mode is %q, want wal", mode)
	}
	var fk, syncMode int
	if err := db.sql.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil {
		return fmt.Errorf("read foreign_keys: %w", err)
	}
	if err := db.sql.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&syncMode); err != nil {
		return fmt.Errorf("read synchronous: %w", err)
	}
	if fk != 1 || syncMode != 2 {
		return fmt.Errorf("foreign_keys=%d synchronous=%d, want 1 and 2 (FULL)", fk, syncMode)
	}
	return nil
}

// Close closes the database.
func (db *DB) Close() error {
	if db.use != nil {
		defer db.use.Close() // drops the shared lock
	}
	closeUse(db.useConn) // drops the advisory lock with its session
	if err := db.sql.Close(); err != nil {
		return fmt.Errorf("close database %s: %w", db.path, err)
	}
	return nil
}

// provider returns goose's migration provider for the database; with
// locking, on PostgreSQL, migrations of several rotords (on several
// machines) at once run one at a time. Reading the version needs no lock.
func (db *DB) provider(locking bool) (*goose.Provider, error) {
	dialect, files := goose.DialectSQLite3, migrations.FSFor(migrations.SQLite)
	opts := []goose.ProviderOption{goose.WithDisableGlobalRegistry(true), goose.WithLogger(goose.NopLogger())}
	if db.dialect == dialectPostgres {
		dialect, files = goose.DialectPostgres, migrations.FSFor(migrations.Postgres)
		if locking {
			locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 300))
			if err != nil {
				return nil, fmt.Errorf("migration lock: %w", err)
			}
			opts = append(opts, goose.WithSessionLocker(locker))
		}
	}
	p, err := goose.NewProvider(dialect, db.sql, files, opts...)
	if err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	return p, nil
}

// SchemaVersion returns the schema version of the database.
func (db *DB) SchemaVersion(ctx context.Context) (int64, error) {
	p, err := db.provider(false)
	if err != nil {
		return 0, err
	}
	var v int64
	err = db.retry(ctx, func() (err error) {
		v, err = p.GetDBVersion(ctx)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}

// Migrate applies pending migrations and returns the schema versions before
// and after. It refuses a database newer than this binary with
// ErrSchemaTooNew. Concurrent migrations from several processes on one
// machine are serialized.
func (db *DB) Migrate(ctx context.Context) (from, to int64, err error) {
	return db.migrateTo(ctx, migrations.Latest())
}

func (db *DB) migrateTo(ctx context.Context, target int64) (from, to int64, err error) {
	from, err = db.SchemaVersion(ctx)
	if err != nil {
		return 0, 0, err
	}
	if latest := migrations.Latest(); from > latest {
		return from, from, fmt.Errorf("database %s has schema version %d, this rotord knows versions up to %d: %w",
			db.path, from, latest, ErrSchemaTooNew)
	}
	if from >= target {
		return from, from, nil
	}
	if db.dialect == dialectSQLite {
		unlock, err := lockFile(ctx, db.path+".migrate-lock")
		if err != nil {
			return from, from, err
		}
		defer unlock()
	}
	// Another process may have migrated while this one waited for the lock.
	if from, err = db.SchemaVersion(ctx); err != nil {
		return 0, 0, err
	}
	if from > migrations.Latest() {
		return from, from, fmt.Errorf("database %s has schema version %d, this rotord knows versions up to %d: %w",
			db.path, from, migrations.Latest(), ErrSchemaTooNew)
	}
	p, err := db.provider(true)
	if err != nil {
		return from, from, err
	}
	results, err := p.UpTo(ctx, target)
	if err != nil {
		return from, from, fmt.Errorf("migrate database %s: %w", db.path, err)
	}
	to = from
	for _, r := range results {
		db.log.Info("schema migration applied", "version", r.Source.Version, "duration", r.Duration)
		to = r.Source.Version
	}
	return from, to, nil
}

// lockFile takes an exclusive flock on path, creating the file, and
// returns the function that releases it. It waits while another process
// holds the lock, until ctx is done. It is a separate file because closing
// a descriptor of the database file would drop SQLite's own locks.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open migration lock: %w", err)
	}
	if err := flockWait(ctx, f, syscall.LOCK_EX); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("migration lock %s: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		_ = f.Close()
	}, nil
}

// flockWait takes flock how (LOCK_SH or LOCK_EX) on f, waiting while
// another process holds a conflicting lock, until ctx is done.
func flockWait(ctx context.Context, f *os.File, how int) error {
	var tick *time.Ticker
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			return err
		}
		if tick == nil {
			tick = time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for lock: %w", ctx.Err())
		case <-tick.C:
		}
	}
}
