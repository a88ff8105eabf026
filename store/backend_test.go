package store_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // the raw view of a PostgreSQL journal

	"github.com/rotord/rotord/store"
	"github.com/rotord/rotord/store/pgtest"
)

// backend is one database the journal runs on. Tests that touch the
// journal run once per backend (eachBackend): one test, two databases.
type backend struct {
	name string
	// fresh returns the location of a new, empty journal: a file path
	// (SQLite) or a connection string (PostgreSQL).
	fresh func(tb testing.TB) string
	// open opens the journal at loc, as store.Open or store.OpenPostgres.
	open func(ctx context.Context, loc string, keys *store.Keyring, opts ...store.Option) (*store.DB, error)
	// raw opens the database at loc directly, bypassing the store; its
	// statements use $1-style parameters on both.
	raw func(tb testing.TB, loc string) *sql.DB
}

var sqliteBackend = backend{
	name:  "sqlite",
	fresh: func(tb testing.TB) string { return filepath.Join(tb.TempDir(), "rotord.db") },
	open:  store.Open,
	raw:   rawSQL,
}

var postgresBackend = backend{
	name:  "postgres",
	fresh: func(tb testing.TB) string { return pgtest.NewDatabase(tb) },
	open:  store.OpenPostgres,
	raw: func(tb testing.TB, dsn string) *sql.DB {
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			tb.Fatal(err)
		}
		db.SetMaxOpenConns(1)
		tb.Cleanup(func() { _ = db.Close() })
		return db
	},
}

// eachBackend runs f as a subtest per backend.
func eachBackend(t *testing.T, f func(t *testing.T, b backend)) {
	for _, b := range []backend{sqliteBackend, postgresBackend} {
		t.Run(b.name, func(t *testing.T) { f(t, b) })
	}
}

// mustOpen opens a fresh journal with a new key and returns it with its
// location.
func (b backend) mustOpen(tb testing.TB, opts ...store.Option) (*store.DB, string) {
	tb.Helper()
	loc := b.fresh(tb)
	db, err := b.open(context.Background(), loc, store.NewKeyring(mustKey(tb)), opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = db.Close() })
	return db, loc
}
