package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

const (
	dialectSQLite   = "sqlite"
	dialectPostgres = "postgres"
)

// useLockKey is the PostgreSQL advisory lock that stands for the SQLite
// store's rotord.db.lock: every open store holds it shared on a
// connection of its own, and Rekey needs it alone.
const useLockKey = 0x726f746f7264 // "rotord"

// maxPostgresConns bounds a store's connections to PostgreSQL: the
// rotations in flight, the lease renewals and the use lock's connection.
const maxPostgresConns = 16

// OpenPostgres opens the journal in the PostgreSQL database dsn names (a
// libpq connection string or URL, as pgx reads it: sslmode=verify-full
// with sslrootcert checks the server), applies pending migrations and
// checks keys as Open does. Several rotords, on several machines, may
// share the database: leases and the fencing generations keep one
// rotation per secret across them. Errors name the database and server,
// never the password a dsn may hold.
//
// Statements that fail for a transient reason (a broken connection, the
// server restarting or failing over) are tried again for up to the retry
// window (WithRetryWindow).
func OpenPostgres(ctx context.Context, dsn string, keys *Keyring, opts ...Option) (*DB, error) {
	db, err := openPostgres(ctx, dsn, keys, opts)
	return finishOpen(ctx, db, err, keys)
}

// MigratePostgres applies the pending migrations to the PostgreSQL
// database dsn names and returns the schema versions before and after.
// Migrations of several rotords at once are serialized by an advisory
// lock.
func MigratePostgres(ctx context.Context, dsn string, opts ...Option) (from, to int64, err error) {
	db, err := openPostgres(ctx, dsn, nil, opts)
	return migrateOnce(ctx, db, err)
}

// finishOpen migrates db, just opened (unless err), and checks the key,
// closing db on failure.
func finishOpen(ctx context.Context, db *DB, err error, keys *Keyring) (*DB, error) {
	if err != nil {
		return nil, err
	}
	if _, _, err := db.Migrate(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	if keys != nil {
		if err := db.CheckKey(ctx); err != nil {
			_ = db.Close()
			return nil, err
		}
	}
	return db, nil
}

// DescribePostgres names the database a PostgreSQL connection string
// points to, for messages: database, server and user, never the password.
// Its error says the string does not parse, without quoting it.
func DescribePostgres(dsn string) (string, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx's parse errors may quote the string: never pass them on.
		return "", errors.New("store dsn does not parse as a PostgreSQL connection string")
	}
	return fmt.Sprintf("postgres database %q on %s:%d as %q", cfg.Database, cfg.Host, cfg.Port, cfg.User), nil
}

func openPostgres(ctx context.Context, dsn string, keys *Keyring, opts []Option) (*DB, error) {
	o := options{now: time.Now, log: slog.New(slog.NewTextHandler(io.Discard, nil)), retryWindow: DefaultRetryWindow}
	for _, opt := range opts {
		opt(&o)
	}
	name, err := DescribePostgres(dsn)
	if err != nil {
		return nil, err
	}
	gdb, err := gorm.Open(postgres.New(postgres.Config{DSN: dsn}), &gorm.Config{
		Logger:                 logger.Discard, // statements carry sealed values; never log them
		SkipDefaultTransaction: true,
		NowFunc:                func() time.Time { return o.now().UTC() },
	})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	sqlDB, err := gdb.DB()
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	sqlDB.SetMaxOpenConns(maxPostgresConns)
	sqlDB.SetMaxIdleConns(4)
	sqlDB.SetConnMaxIdleTime(time.Minute)
	db := &DB{gdb: gdb, sql: sqlDB, path: name, dialect: dialectPostgres, now: o.now, log: o.log, retryWindow: o.retryWindow}
	db.keys.Store(keys)
	// The use lock: shared while open, waited for while a rekey runs.
	conn, err := sqlDB.Conn(ctx)
	if err == nil {
		_, err = conn.ExecContext(ctx, `SELECT pg_advisory_lock_shared($1)`, useLockKey)
		if err != nil {
			_ = conn.Close()
		}
	}
	if err != nil {
		_ = sqlDB.Close()
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	db.useConn = conn
	return db, nil
}

// rekeyTransactionPostgres runs fn in a transaction on the session that
// holds this store's use lock shared, after taking the lock exclusively
// for that transaction (a session's own shared lock does not conflict);
// ErrInUse while another store holds it, shared on its session or for a
// transaction that seals (sealGuard). The exclusive lock ends with the
// transaction, commit or abort: it cannot outlive or miss the rewrite.
func (db *DB) rekeyTransactionPostgres(ctx context.Context, fn func(tx *gorm.DB) error) error {
	g := db.gdb.Session(&gorm.Session{NewDB: true, Context: ctx})
	g.Statement.ConnPool = db.useConn
	return g.Transaction(func(tx *gorm.DB) error {
		var ok bool
		if err := tx.Raw(`SELECT pg_try_advisory_xact_lock(?)`, useLockKey).Scan(&ok).Error; err != nil {
			return fmt.Errorf("use lock: %w", err)
		}
		if !ok {
			return ErrInUse
		}
		return fn(tx)
	})
}

// closeUse drops the use lock of a PostgreSQL store. It is released
// explicitly, not left to the session's end: the server ends a closed
// session's backend after Close returns, so a rekey right after could
// still find the lock held.
func closeUse(c *sql.Conn) {
	if c == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// An error means the session is gone already, and the lock with it.
	_, _ = c.ExecContext(ctx, `SELECT pg_advisory_unlock_shared($1)`, useLockKey)
	_ = c.Close()
}
